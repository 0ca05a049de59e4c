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
joint action ``[B, J]``, used by the score baseline and the exact gradient) while its
``enumerable`` attribute (default True) allows: above the enumeration limit ``score`` uses a
sampled leave-one-out baseline and ``exact`` refuses.

Maths and sources: docs/DESIGN.md §3.
- gumbel-st: Jang, Gu, Poole 2017 (arXiv:1611.01144); Maddison, Mnih, Teh 2017.
- gumbel-soft: the relaxed sample itself (as MADDPG feeds its critic).
- softmax-st: straight-through with no noise: ``onehot(argmax l)`` forward,
  ``softmax(l / tau)`` backward (Bengio, Leonard, Courville 2013 style ST, deterministic).
- score: Williams 1992 with the control variate ``V(s) = sum_a pi(a|s) f(a)``.
- st-sampled-nonoise / st-mode-noisy: the two off-diagonal cells of the 2x2 that gumbel-st
  (sampled action, noisy backward) and softmax-st (mode, noise-free backward) span: *where f is
  evaluated* x *which softmax the gradient flows through*, to separate the two roles the
  Gumbel noise plays in gumbel-st (``python -m gumbel_ac.study``).
- score-sampled: score with the sampled leave-one-out baseline of Kool, van Hoof, Welling 2019
  ("Buy 4 REINFORCE samples, get a baseline for free!") even when the actions are enumerable,
  i.e. REINFORCE as it is used where nothing can be summed over.
- exact: ``sum_a pi(a|s) f(a)`` (Christodoulou 2019, discrete SAC) -- zero variance.
- gumbel-rao: Paulus, Maddison, Krause 2020 (arXiv:2010.04838), Rao-Blackwellized ST-GS.
- reinmax: Liu et al. 2023 (NeurIPS, arXiv:2304.08612), Algorithm 2.
- gst: Fan et al. 2022 (ICML, arXiv:2206.07235), gapped straight-through.

Options: ``gumbel-rao`` takes ``rao_samples``, ``gst`` takes ``gap``, ``score`` takes
``score_samples`` (its sampled baseline's draws, used above the enumeration limit) and
``score-sampled`` takes ``score_samples`` too (its draws, always); pass them through
``get_estimator(name, **options)``, which validates them (``validate_estimator_options``) and
returns a ``functools.partial`` with the shared signature.

Temperatures: ``tau`` may be a Python float or a 0-dim tensor (annealed on the device).
Estimators check a Python-number tau on every call (cheap); a tensor tau is never read back
to the host (that would be a device sync per update) -- it is checked at config time.

Shape legend: ``B`` batch, ``K`` concatenated logits over heads, ``J`` joint actions,
``H`` heads, ``A`` one head's actions, ``R`` Rao-Blackwellisation samples.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Protocol

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

Tau = float | torch.Tensor

#: Default number of conditional Gumbel draws of ``gumbel-rao``. Paulus et al. 2020 (Fig. 2)
#: report most of the variance reduction by ~10 draws; the cost is ``R`` softmaxes per head.
DEFAULT_RAO_SAMPLES = 10
#: Draws of ``score``'s leave-one-out baseline when the action set is too large to enumerate
#: (Kool et al. 2019 found 4 samples enough to give a useful baseline).
DEFAULT_SCORE_SAMPLES = 4
#: Default gap kappa of ``gst`` (Fan et al. 2022 call this variant GST-1.0).
DEFAULT_GST_GAP = 1.0


# ----------------------------------------------------------------------------- helpers


def _check_tau(tau: Tau) -> None:
    """Raise for a non-positive / non-finite Python tau; never read a tensor tau back.

    A tensor temperature lives on the device; checking it here would sync every update, so
    it is validated where it is made (the config / schedule, ``validate_estimator_options``).
    """
    if isinstance(tau, torch.Tensor):
        return
    if not (isinstance(tau, Real) and tau > 0 and math.isfinite(tau)):
        raise ValueError(f"Gumbel-Softmax temperature tau must be > 0 and finite, got {tau!r}.")


def _compute_dtype(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits are computed in float32 (softmax Jacobians underflow in bf16)."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


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


def _straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """``hard`` forward, ``d soft`` backward: ``D + (s - sg(s))``, bit-exact one-hot since ``s - s == 0``."""
    return hard + (soft - soft.detach())


def _pass_gradient(value: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """A tensor whose value is ``value`` (constant) and whose gradient w.r.t. ``logits`` is identity.

    ``value + (l - sg(l))``, except at masked ``-inf`` logits where ``l - l`` is NaN: there the
    value stays ``-inf`` and the gradient 0 (``torch.where`` never back-propagates the
    unselected branch's NaN, only zeros into it).
    """
    delta = torch.where(torch.isneginf(logits), torch.zeros_like(logits), logits - logits.detach())
    return value.detach() + delta


# ----------------------------------------------------------------------------- estimators


def gumbel_st(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: Tau,
    generator: torch.Generator | None = None,
) -> EstimatorOutput:
    """Straight-through Gumbel-Softmax: forward ``onehot(argmax(l+G))``, backward ``d softmax((l+G)/tau)``."""
    _check_tau(tau)
    perturbed, index = _gumbel_perturb(logits_BK, spec, generator)
    parts = []
    for h, z in enumerate(perturbed):
        y = relaxed_softmax(z, tau)
        hard = F.one_hot(index[:, h], spec.nvec[h]).to(y.dtype)
        parts.append(_straight_through(hard, y))  # exactly one-hot forward: y - y == 0
    return EstimatorOutput(objective.at(_concat(parts)), index)


def gumbel_soft(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: Tau,
    generator: torch.Generator | None = None,
) -> EstimatorOutput:
    """The relaxed sample ``softmax((l+G)/tau)`` itself goes into ``f`` (biased; MADDPG-style)."""
    _check_tau(tau)
    perturbed, index = _gumbel_perturb(logits_BK, spec, generator)
    relaxed = _concat([relaxed_softmax(z, tau) for z in perturbed])
    return EstimatorOutput(objective.at(relaxed), index)


def softmax_st(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: Tau,
    generator: torch.Generator | None = None,
) -> EstimatorOutput:
    """Straight-through with no noise: forward ``onehot(argmax l)``, backward ``d softmax(l / tau)``.

    Deterministic: ``f`` is always evaluated at the mode, the "choose the same c every time"
    case of docs/DESIGN.md §1. ``index_BH`` is that mode (the action ``f`` saw). The Gumbel noise
    is still drawn and discarded so the generator advances exactly as for the sampling
    estimators: under one seed, everything drawn *after* the estimator is identical whichever
    estimator ran.
    """
    _check_tau(tau)
    _gumbel_perturb(logits_BK, spec, generator)  # keep the RNG stream aligned (see docstring)
    compute = _compute_dtype(logits_BK)
    parts, idx = [], []
    for h, lg in enumerate(spec.split(compute)):
        i = lg.detach().argmax(-1)
        s = relaxed_softmax(lg, tau)
        parts.append(_straight_through(F.one_hot(i, spec.nvec[h]).to(s.dtype), s))
        idx.append(i)
    return EstimatorOutput(objective.at(_concat(parts)), torch.stack(idx, dim=-1))


def st_sampled_nonoise(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: Tau,
    generator: torch.Generator | None = None,
) -> EstimatorOutput:
    """Straight-through at the Gumbel-max SAMPLE, backward through the noise-free softmax.

    ``a = argmax(l + G)`` (an exact ``Categorical(softmax(l))`` sample, Gumbel-max), then

        surrogate = f(D + s - sg(s)),   D = onehot(a),   s = softmax(l / tau),

    so the value is ``f(a)`` and the gradient ``J(s)^T df/dD (a) / tau`` with
    ``J(s) = diag(s) - s s^T``. The noise chooses where ``f``'s slope is read (as in
    gumbel-st) but does not enter the Jacobian (as in softmax-st): the off-diagonal cell of
    the 2x2 whose other cells are gumbel-st (sample, ``softmax((l+G)/tau)``) and softmax-st
    (mode, ``softmax(l/tau)``). For a linear ``f`` the gradient does not depend on the sample
    and equals softmax-st's. ``index_BH`` is the sample.
    """
    _check_tau(tau)
    _, index = _gumbel_perturb(logits_BK, spec, generator)
    compute = _compute_dtype(logits_BK)
    parts = []
    for h, lg in enumerate(spec.split(compute)):
        s = relaxed_softmax(lg, tau)
        parts.append(_straight_through(F.one_hot(index[:, h], spec.nvec[h]).to(s.dtype), s))
    return EstimatorOutput(objective.at(_concat(parts)), index)


def st_mode_noisy(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: Tau,
    generator: torch.Generator | None = None,
) -> EstimatorOutput:
    """Straight-through at the MODE, backward through the noisy (Gumbel-perturbed) softmax.

        surrogate = f(M + y - sg(y)),   M = onehot(argmax l),   y = softmax((l + G) / tau),

    with ``G`` standard Gumbel noise: the value is ``f`` at the mode (deterministic, as
    softmax-st) and the gradient ``J(y)^T df/dM (mode) / tau`` is random through ``G`` (as
    gumbel-st's). The noise only perturbs the Jacobian, never the action ``f`` sees: the
    other off-diagonal cell of the 2x2 (see :func:`st_sampled_nonoise`). ``index_BH`` is the
    mode (the action ``f`` saw); the noise comes from ``_gumbel_perturb`` like every sampling
    estimator's, so one seed gives the same ``G`` as gumbel-st.
    """
    _check_tau(tau)
    perturbed, _ = _gumbel_perturb(logits_BK, spec, generator)
    parts, idx = [], []
    for h, (lg, z) in enumerate(zip(spec.split(logits_BK), perturbed, strict=True)):
        i = lg.detach().argmax(-1)
        y = relaxed_softmax(z, tau)
        parts.append(_straight_through(F.one_hot(i, spec.nvec[h]).to(y.dtype), y))
        idx.append(i)
    return EstimatorOutput(objective.at(_concat(parts)), torch.stack(idx, dim=-1))


def score(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: Tau,
    generator: torch.Generator | None = None,
    score_samples: int = DEFAULT_SCORE_SAMPLES,
) -> EstimatorOutput:
    """Score function (REINFORCE) with the baseline ``V = sum_a pi(a) f(a)``.

    ``surrogate = f(a) + (log pi(a) - sg(log pi(a))) * sg(f(a) - V)``: its value is ``f(a)``,
    its gradient ``grad log pi(a) * (f(a) - V)`` plus any direct dependence of ``f`` on the
    logits. ``tau`` is unused (the estimator has no temperature); accepted for the shared
    signature (and still validated, so a bad config fails the same way for every estimator).
    """
    _check_tau(tau)
    _, index = _gumbel_perturb(logits_BK, spec, generator)  # Gumbel-max == Categorical(pi)
    hard = spec.onehot(index, dtype=logits_BK.dtype)
    value = objective.at(hard)
    logp = spec.log_prob(logits_BK, index)
    if not getattr(objective, "enumerable", True):
        return _score_leave_one_out(logits_BK, objective, spec, index, value, logp, score_samples, generator)
    with torch.no_grad():
        baseline = (spec.joint_log_probs(logits_BK).exp() * objective.all()).sum(-1)
        advantage = value - baseline
    return EstimatorOutput(value + (logp - logp.detach()) * advantage, index)


def score_sampled(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: Tau,
    generator: torch.Generator | None = None,
    score_samples: int = DEFAULT_SCORE_SAMPLES,
) -> EstimatorOutput:
    """Score function with ``S = score_samples`` draws and the leave-one-out baseline, always.

    ``score`` subtracts the exact baseline ``V = sum_a pi(a) f(a)`` whenever the actions can
    be enumerated, which needs ``f`` at *every* action: that makes REINFORCE stronger than it
    is anywhere the action set cannot be summed over. This estimator uses only sampled
    actions (Kool, van Hoof, Welling 2019):

        surrogate = (1/S) sum_k [f(a_k) + (log pi(a_k) - sg(log pi(a_k))) * sg(f(a_k) - b_k)],
        b_k = (1/(S-1)) sum_{j != k} f(a_j),   a_1..a_S ~ pi i.i.d. (Gumbel-max),

    unbiased (``b_k`` does not depend on ``a_k``), ``S`` evaluations of ``f``. Its value is the
    mean of the ``S`` evaluations; ``index_BH`` is the first draw ``a_1``, the same action
    every other sampling estimator returns under the same seed. ``tau`` is unused (validated,
    as for ``score``).
    """
    _check_tau(tau)
    validate_estimator_options("score-sampled", score_samples=score_samples)
    _, index = _gumbel_perturb(logits_BK, spec, generator)
    value = objective.at(spec.onehot(index, dtype=logits_BK.dtype))
    logp = spec.log_prob(logits_BK, index)
    return _score_leave_one_out(logits_BK, objective, spec, index, value, logp, score_samples, generator)


def _score_leave_one_out(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    index_BH: torch.Tensor,
    value_B: torch.Tensor,
    logp_B: torch.Tensor,
    samples: int,
    generator: torch.Generator | None,
) -> EstimatorOutput:
    """Score function with ``S`` draws and the leave-one-out baseline, for action sets too
    large to enumerate (Kool, van Hoof, Welling 2019, "Buy 4 REINFORCE samples, get a baseline
    for free!"): with ``a_1..a_S ~ pi`` (``a_1`` the action already drawn),

        surrogate = (1/S) sum_k [f(a_k) + (log pi(a_k) - sg(log pi(a_k))) * sg(f(a_k) - b_k)],
        b_k = (1/(S-1)) sum_{j != k} f(a_j),

    unbiased because ``b_k`` does not depend on ``a_k``. Costs ``S`` objective evaluations.
    """
    values, logps = [value_B], [logp_B]
    for _ in range(samples - 1):
        _, extra = _gumbel_perturb(logits_BK, spec, generator)
        values.append(objective.at(spec.onehot(extra, dtype=logits_BK.dtype)))
        logps.append(spec.log_prob(logits_BK, extra))
    value_SB, logp_SB = torch.stack(values), torch.stack(logps)
    with torch.no_grad():
        loo_SB = (value_SB.sum(0, keepdim=True) - value_SB) / (samples - 1)
        advantage_SB = value_SB - loo_SB
    surrogate_B = (value_SB + (logp_SB - logp_SB.detach()) * advantage_SB).mean(0)
    return EstimatorOutput(surrogate_B, index_BH)


def exact(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: Tau,
    generator: torch.Generator | None = None,
) -> EstimatorOutput:
    """The exact expectation ``sum_a pi(a) f(a)``: zero-variance gradient (K small)."""
    _check_tau(tau)
    if not getattr(objective, "enumerable", True):
        raise ValueError(
            f"the exact estimator sums over all {spec.num_joint} joint actions, above --max-enumerated-actions; "
            "use gumbel-st, gumbel-rao or score (sampled baseline), or raise --max-enumerated-actions"
        )
    _, index = _gumbel_perturb(logits_BK, spec, generator)  # for acting/logging only
    probs_BJ = spec.joint_log_probs(logits_BK).exp()
    return EstimatorOutput((probs_BJ * objective.all()).sum(-1), index)


def conditional_gumbels(logits_BA: torch.Tensor, index_B: torch.Tensor, gumbel_BRA: torch.Tensor) -> torch.Tensor:
    """Perturbed logits ``l + G`` drawn from ``G | argmax(l + G) = index``, ``R`` per row.

    Paulus, Maddison, Krause 2020, Appendix (the "top-down" construction of Maddison et al.
    2014): with ``E ~ Exp(1)`` and ``Z = sum_j exp(l_j)``,

        (l+G)_i = -log E_i + log Z,     (l+G)_j = -log(E_j exp(-l_j) + E_i / Z),  j != i.

    Written in log space (``log E = -G`` for a standard Gumbel ``G``, ``log Z`` by
    logsumexp, ``-logaddexp`` for the sum) so 1e30 logits do not overflow ``exp`` and masked
    ``-inf`` logits stay ``-inf``. Returns ``[B, R, A]`` (no gradient).

    Args:
        logits_BA: one head's logits.
        index_B: the sampled action, the argmax the draws are conditioned on.
        gumbel_BRA: independent standard Gumbel noise, ``R`` draws per row.
    """
    lg = logits_BA.detach().unsqueeze(1)  # [B, 1, A]
    log_e = -gumbel_BRA  # log of Exp(1) draws
    log_z = torch.logsumexp(lg, dim=-1, keepdim=True)  # [B, 1, 1]
    gather = index_B.view(-1, 1, 1).expand(-1, gumbel_BRA.shape[1], 1)
    log_e_i = log_e.gather(-1, gather)  # [B, R, 1]
    top = log_z - log_e_i  # the max: Gumbel(log Z), independent of which action attains it
    others = -torch.logaddexp(log_e - lg, log_e_i - log_z)  # truncated below `top`
    is_i = F.one_hot(index_B, logits_BA.shape[-1]).bool().unsqueeze(1)
    return torch.where(is_i, top.expand_as(others), others)


def gumbel_rao(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: Tau,
    generator: torch.Generator | None = None,
    rao_samples: int = DEFAULT_RAO_SAMPLES,
) -> EstimatorOutput:
    """Gumbel-Rao: straight-through with the relaxed sample averaged over ``G | D``.

    Paulus, Maddison, Krause 2020, eq. (7)-(9): the forward is the same hard sample ``D`` as
    gumbel-st (drawn by ``_gumbel_perturb``, so one seed gives one ``D``); the backward is
    ``d/dl mean_r softmax((l + sg(G^r)) / tau)`` over ``rao_samples`` Gumbel draws
    conditioned on ``argmax(l + G) = D``. This is ``E[ST-GS gradient | D]`` estimated by
    Monte Carlo: same mean as gumbel-st, variance never larger (Rao-Blackwell); with one
    draw it has gumbel-st's distribution.
    """
    _check_rao_samples(rao_samples)
    _check_tau(tau)
    _, index = _gumbel_perturb(logits_BK, spec, generator)
    compute = _compute_dtype(logits_BK)
    parts = []
    for h, lg in enumerate(spec.split(compute)):
        noise = sample_gumbel(
            (lg.shape[0], rao_samples, lg.shape[1]), generator=generator, device=lg.device, dtype=lg.dtype
        )
        cond_BRA = conditional_gumbels(lg, index[:, h], noise)
        # value = the conditional perturbed logits, gradient = identity in l: softmax((l + sg(G^r))/tau)
        z_BRA = _pass_gradient(cond_BRA, lg.unsqueeze(1).expand_as(cond_BRA))
        soft = relaxed_softmax(z_BRA, tau).mean(dim=1)
        parts.append(_straight_through(F.one_hot(index[:, h], spec.nvec[h]).to(soft.dtype), soft))
    return EstimatorOutput(objective.at(_concat(parts)), index)


class _ReinMaxST(torch.autograd.Function):
    """Identity on the hard sample forward; the ReinMax gradient backward.

    Liu et al. 2023, Algorithm 2 (and the authors' reference ``ReinMaxCore``): with
    ``pi0 = softmax(l)``, ``pi1 = (softmax(l / tau) + D) / 2`` and ``J(p) = diag(p) - p p^T``,

        grad_l = 2 J(pi1) g - 0.5 J(pi0) g,   then centred (minus its mean),

    a second-order (Heun / trapezoid) correction of straight-through at first-order cost.
    ``J(p) g`` already sums to zero, so the centring only removes rounding.
    """

    @staticmethod
    def forward(ctx: Any, logits_BA: torch.Tensor, hard_BA: torch.Tensor, tau: Tau) -> torch.Tensor:
        ctx.save_for_backward(logits_BA, hard_BA)
        ctx.tau = tau  # float or 0-dim tensor; never read back to the host
        return hard_BA.clone()

    @staticmethod
    def backward(ctx: Any, grad_BA: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        logits_BA, hard_BA = ctx.saved_tensors
        return reinmax_gradient(logits_BA, hard_BA, grad_BA, ctx.tau), None, None


def reinmax_gradient(logits_BA: torch.Tensor, hard_BA: torch.Tensor, grad_BA: torch.Tensor, tau: Tau) -> torch.Tensor:
    """``2 J(pi1) g - 0.5 J(pi0) g``, mean-centred: the ReinMax backward (Liu et al. 2023, Alg. 2).

    Args:
        logits_BA: one head's logits ``l``.
        hard_BA: the one-hot sample ``D``.
        grad_BA: ``g = df/dD``.
        tau: temperature of ``pi1``'s softmax (>= 1).
    """
    pi0 = torch.softmax(logits_BA, dim=-1)
    pi1 = 0.5 * (relaxed_softmax(logits_BA, tau) + hard_BA)

    def jvp(p: torch.Tensor) -> torch.Tensor:  # J(p) g = p * g - p * <p, g>
        pg = p * grad_BA
        return pg - p * pg.sum(dim=-1, keepdim=True)

    grad = 2.0 * jvp(pi1) - 0.5 * jvp(pi0)
    return grad - grad.mean(dim=-1, keepdim=True)


def reinmax(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: Tau,
    generator: torch.Generator | None = None,
) -> EstimatorOutput:
    """ReinMax (Liu et al. 2023): forward ``D ~ Categorical(softmax(l))``, backward ``reinmax_gradient``.

    Needs ``tau >= 1`` (the paper's Section 5 / the reference implementation refuse smaller
    temperatures: ``pi1`` then leans on ``D`` and the Heun step loses its accuracy).
    ``D`` comes from ``_gumbel_perturb`` (Gumbel-max is an exact Categorical(pi) sample).
    """
    validate_estimator_options("reinmax", tau)
    _, index = _gumbel_perturb(logits_BK, spec, generator)
    compute = _compute_dtype(logits_BK)
    parts = []
    for h, lg in enumerate(spec.split(compute)):
        hard = F.one_hot(index[:, h], spec.nvec[h]).to(lg.dtype)
        parts.append(_ReinMaxST.apply(lg, hard, tau))
    return EstimatorOutput(objective.at(_concat(parts)), index)


def gapped_logits(logits_BA: torch.Tensor, index_B: torch.Tensor, gap: float | str) -> torch.Tensor:
    """The GST "mover" (Fan et al. 2022, Sec. 4): shift ``l`` so ``index`` is the max by ``gap``.

    Deterministic moves, computed from ``sg(l)`` and added as constants: the sampled logit is
    raised to ``max l``; every other logit above ``max l - gap`` is lowered to it. Gradients
    pass straight to ``l``. ``gap="p"`` is the paper's adaptive GST-p gap
    ``-log(1 - pi_D) / pi_D``. Masked ``-inf`` logits stay ``-inf`` (``torch.where``, never
    ``inf * 0``).
    """
    lg = logits_BA.detach()
    is_d = F.one_hot(index_B, lg.shape[-1]).bool()
    top = lg.amax(dim=-1, keepdim=True)
    if gap == "p":
        pi_d = torch.softmax(lg, dim=-1).gather(-1, index_B.unsqueeze(-1)) * (1 - 1e-5)  # 1 - pi > 0
        kappa: torch.Tensor | float = -torch.log1p(-pi_d) / pi_d
    else:
        kappa = float(gap)
    zeros = torch.zeros_like(lg)
    up = torch.where(is_d, top - lg, zeros)
    down = torch.where(is_d | torch.isneginf(lg), zeros, (lg - top + kappa).clamp(min=0.0))
    return logits_BA + (up - down)


def gst(
    logits_BK: torch.Tensor,
    objective: Objective,
    spec: ActionSpec,
    *,
    tau: Tau,
    generator: torch.Generator | None = None,
    gap: float | str = DEFAULT_GST_GAP,
) -> EstimatorOutput:
    """Gapped straight-through (Fan et al. 2022): ``D + s - sg(s)``, ``s = softmax(gapped(l) / tau)``.

    A noise-free surrogate of ST-GS: instead of a random ``G``, the logits are moved
    deterministically (``gapped_logits``) so the sampled action wins by ``gap``, which keeps
    the two properties the paper identifies (the sample is the surrogate's argmax, with a
    margin) at no sampling variance beyond ``D`` itself.
    """
    _check_gap(gap)
    _check_tau(tau)
    _, index = _gumbel_perturb(logits_BK, spec, generator)
    compute = _compute_dtype(logits_BK)
    parts = []
    for h, lg in enumerate(spec.split(compute)):
        soft = relaxed_softmax(gapped_logits(lg, index[:, h], gap), tau)
        parts.append(_straight_through(F.one_hot(index[:, h], spec.nvec[h]).to(soft.dtype), soft))
    return EstimatorOutput(objective.at(_concat(parts)), index)


# ----------------------------------------------------------------------------- registry


#: name -> estimator. Later estimators register here and are found by ``get_estimator``.
ESTIMATORS: dict[str, EstimatorFn] = {
    "gumbel-st": gumbel_st,
    "gumbel-soft": gumbel_soft,
    "softmax-st": softmax_st,
    "st-sampled-nonoise": st_sampled_nonoise,
    "st-mode-noisy": st_mode_noisy,
    "score": score,
    "score-sampled": score_sampled,
    "exact": exact,
    "gumbel-rao": gumbel_rao,
    "reinmax": reinmax,
    "gst": gst,
}

#: estimator name -> the options it takes (keyword arguments beyond the shared signature).
ESTIMATOR_OPTIONS: dict[str, tuple[str, ...]] = {
    "gumbel-rao": ("rao_samples",),
    "gst": ("gap",),
    "score": ("score_samples",),
    "score-sampled": ("score_samples",),
}
_ALL_OPTIONS = frozenset(o for opts in ESTIMATOR_OPTIONS.values() for o in opts)

#: Estimators whose temperature must be >= 1 (Liu et al. 2023).
MIN_TAU: dict[str, float] = {"reinmax": 1.0}


def _check_rao_samples(rao_samples: Any) -> None:
    if isinstance(rao_samples, bool) or not isinstance(rao_samples, Integral) or int(rao_samples) < 1:
        raise ValueError(f"gumbel-rao needs rao_samples = a positive integer (draws of G | D), got {rao_samples!r}.")


def _check_gap(gap: Any) -> None:
    if gap == "p":
        return
    if isinstance(gap, bool) or not isinstance(gap, Real) or not (float(gap) >= 0 and math.isfinite(gap)):
        raise ValueError(f"gst needs gap = a finite number >= 0 or 'p' (adaptive, GST-p), got {gap!r}.")


def _check_name(name: str) -> None:
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose one of: {', '.join(sorted(ESTIMATORS))}")


def validate_estimator_options(name: str, tau: Tau | None = None, **options: Any) -> None:
    """Raise ``ValueError`` with a clear message if ``name``/``tau``/``options`` cannot work.

    Meant for config validation (before any training) and called by the estimators too.

    * ``name`` must be registered; ``tau`` (if a Python number) must be > 0 and finite, and
      >= 1 for ``reinmax``. A tensor tau is not read back (no device sync): validate the
      schedule's Python end points instead.
    * Options known to *some* estimator (``rao_samples``, ``gap``) are value-checked when they
      are not ``None``, and otherwise ignored by estimators that do not take them -- so a
      config may pass ``rao_samples`` whatever the estimator. Unknown option names (typos)
      are errors.
    """
    _check_name(name)
    unknown = sorted(set(options) - _ALL_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown estimator option(s) {', '.join(unknown)} for {name!r}; known options: "
            + ", ".join(f"{k}: {', '.join(v)}" for k, v in ESTIMATOR_OPTIONS.items())
        )
    if options.get("rao_samples") is not None:
        _check_rao_samples(options["rao_samples"])
    if options.get("score_samples") is not None:
        samples = options["score_samples"]
        if isinstance(samples, bool) or not isinstance(samples, Integral) or int(samples) < 2:
            raise ValueError(
                f"score and score-sampled need score_samples = an integer >= 2 (draws for the leave-one-out "
                f"baseline), got {samples!r}."
            )
    if options.get("gap") is not None:
        _check_gap(options["gap"])
    if tau is None or isinstance(tau, torch.Tensor):
        return
    _check_tau(tau)
    if name in MIN_TAU and not tau >= MIN_TAU[name]:
        raise ValueError(
            f"estimator {name!r} needs temperature tau >= {MIN_TAU[name]} (Liu et al. 2023: ReinMax "
            f"is derived for tau >= 1; use gumbel-st for small temperatures), got tau = {tau}."
        )


def get_estimator(name: str, **options: Any) -> EstimatorFn:
    """Look an estimator up by name, with an error that lists the valid names.

    ``get_estimator("gumbel-rao", rao_samples=100)`` / ``get_estimator("gst", gap=0.5)`` bind
    options and return a ``functools.partial`` with the shared signature. Options the named
    estimator does not take are validated and ignored (see ``validate_estimator_options``).
    """
    validate_estimator_options(name, None, **options)
    fn = ESTIMATORS[name]
    bound = {k: v for k, v in options.items() if k in ESTIMATOR_OPTIONS.get(name, ()) and v is not None}
    return functools.partial(fn, **bound) if bound else fn
