"""Problems for the estimator lab: a downstream ``f`` of a one-hot action, and the logits.

A :class:`Problem` holds ``S`` problem instances (one for synthetic problems, ``S`` sampled
states for a trained agent) and builds the estimators' ``Objective`` for any batch of rows
drawn from them. The lab repeats each instance ``M`` times along the batch dimension, so
one estimator call makes ``M`` independent draws per instance.

Synthetic problems (K actions, one head):

* ``linear``:    ``f(a) = <w, a>``. For a linear ``f`` the straight-through and relaxed
  estimators coincide (gumbel-st == gumbel-soft), a sanity check the lab shows.
* ``quadratic``: ``f(a) = <w, a> + a^T A a``: non-linear off the simplex vertices, so
  straight-through keeps a bias that need not vanish as tau -> 0.
* ``kl``:        ``f(a; l) = log q(a) - log p(a)``, ``q = softmax(l)``, ``p`` a fixed,
  spread-out target: ``E_q f = KL(q || p)``. A deterministic choice (softmax-st evaluates
  ``f`` only at the mode) sees none of the other actions' terms and is badly biased.
* ``kl-multimodal``: the same ``f`` with a *multimodal* target ``p*`` (:func:`multimodal_target`:
  a few equal modes holding most of the mass). Minimising ``KL(q || p*)`` is mode-seeking
  (Minka 2005, "Divergence measures and message passing"): a method whose gradient only ever
  looks at one action can settle on one mode, which the reverse KL punishes with
  ``-log p*(mode) > 0``, where ``q = p*`` scores 0. :func:`distill` trains logits on it, the
  study's distillation task (``python -m gumbel_ac.study``).

The KL case's ``f`` depends on ``l`` directly. We keep that dependence *inside* the
objective for every estimator alike: ``at(a)`` and ``all()`` are differentiable in ``l``, so
each estimator's gradient is its estimate of ``sum_a f(a) grad q(a)`` plus the pathwise
term ``grad_l f(a; l) = e_a - q`` at its own action(s). That extra term has expectation
zero under ``a ~ q`` (the score identity), so it adds variance but no bias to unbiased
samplers, and the exact gradient ``grad_l KL(q || p)`` is recovered by the ``exact``
estimator. This is exactly what an actor loss with ``log pi`` inside ``f`` would do.

Shape legend: ``S`` instances, ``B`` rows (instances x draws), ``K`` logits, ``J`` joint
actions, ``D`` observation features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from gumbel_ac.distributions import ActionSpec
from gumbel_ac.estimators import Objective

SYNTHETIC_KINDS: tuple[str, ...] = ("linear", "quadratic", "kl", "kl-multimodal")
#: What ``python -m gumbel_ac.lab`` measures when ``--problems`` is not given.
DEFAULT_KINDS: tuple[str, ...] = ("linear", "quadratic", "kl")

#: Defaults of :func:`multimodal_target`: two modes sharing 90% of the mass.
DEFAULT_MODES = 2
DEFAULT_MODE_MASS = 0.9


class LinearObjective:
    """``f(a) = <w, a>`` per row; ``w_BK`` may be a broadcast view."""

    def __init__(self, w_BK: torch.Tensor, spec: ActionSpec) -> None:
        self.w_BK, self.spec = w_BK, spec

    def at(self, action_BK: torch.Tensor) -> torch.Tensor:
        return (action_BK * self.w_BK.to(action_BK.dtype)).sum(-1)

    def all(self) -> torch.Tensor:
        return self.w_BK @ self.spec.joint_onehot_JK.to(self.w_BK).T


class QuadraticObjective:
    """``f(a) = <w, a> + a^T A a`` with one ``A_KK`` shared by all rows."""

    def __init__(self, w_BK: torch.Tensor, a_KK: torch.Tensor, spec: ActionSpec) -> None:
        self.w_BK, self.a_KK, self.spec = w_BK, a_KK, spec

    def at(self, action_BK: torch.Tensor) -> torch.Tensor:
        a = action_BK
        return (a * self.w_BK.to(a.dtype)).sum(-1) + ((a @ self.a_KK.to(a.dtype)) * a).sum(-1)

    def all(self) -> torch.Tensor:
        onehot_JK = self.spec.joint_onehot_JK.to(self.w_BK)
        quad_J = ((onehot_JK @ self.a_KK) * onehot_JK).sum(-1)
        return self.w_BK @ onehot_JK.T + quad_J


class KLObjective:
    """``f(a; l) = <a, log softmax(l) - log p>`` (one head): ``E_{a~q} f = KL(q || p)``.

    Differentiable in both ``a`` and the logits ``l`` (see the module docstring for why the
    direct dependence is kept).
    """

    def __init__(self, logits_BK: torch.Tensor, log_target_BK: torch.Tensor, spec: ActionSpec) -> None:
        if spec.num_heads != 1:
            raise ValueError("the KL problem is defined for one action head")
        self.logits_BK, self.log_target_BK, self.spec = logits_BK, log_target_BK, spec

    def _values(self) -> torch.Tensor:
        return F.log_softmax(self.logits_BK.float(), dim=-1) - self.log_target_BK

    def at(self, action_BK: torch.Tensor) -> torch.Tensor:
        return (action_BK * self._values().to(action_BK.dtype)).sum(-1)

    def all(self) -> torch.Tensor:
        return self._values()


def multimodal_target(
    num_actions: int, *, modes: int = DEFAULT_MODES, mode_mass: float = DEFAULT_MODE_MASS, seed: int = 0
) -> torch.Tensor:
    """``log p*`` ``[K]``: ``modes`` actions (chosen by ``seed``) share ``mode_mass`` equally, the
    other ``K - modes`` share the rest equally.

    With the defaults at K = 16: two modes of 0.45 and fourteen actions of 0.1/14. Reverse KL
    of a policy from it: ``KL(q || p*) = 0`` only at ``q = p*``; a policy collapsed on one mode
    scores ``-log 0.45 = 0.80``, the uniform policy ``1.65``.
    """
    if not 1 <= modes < num_actions:
        raise ValueError(f"a multimodal target needs 1 <= modes < num_actions, got modes={modes}, K={num_actions}")
    if not 0.0 < mode_mass < 1.0:
        raise ValueError(f"mode_mass must be in (0, 1), got {mode_mass}")
    gen = torch.Generator().manual_seed(seed)
    where = torch.randperm(num_actions, generator=gen)[:modes]
    p = torch.full((num_actions,), (1.0 - mode_mass) / (num_actions - modes), dtype=torch.float64)
    p[where] = mode_mass / modes
    return p.log().float()


def reverse_kl(logits_K: torch.Tensor, log_target_K: torch.Tensor) -> float:
    """``KL(softmax(l) || p*)`` in float64 (the distillation task's score, lower is better)."""
    log_q = torch.log_softmax(logits_K.detach().double(), dim=-1)
    return float((log_q.exp() * (log_q - log_target_K.double())).sum())


ObjectiveFactory = Callable[[torch.Tensor, torch.Tensor], Objective]


@dataclass
class Problem:
    """A lab problem: ``S`` instances of (logits, f).

    Attributes:
        name: short label (used in tables and file names).
        spec: the action spec.
        logits_SK: the logits of each instance (no gradient).
        make_objective: ``(logits_BK, rows_B) -> Objective`` for rows ``rows_B`` of the
            instances; ``logits_BK`` is the tensor being differentiated (needed by ``f``s
            that depend on the logits directly, e.g. the KL problem).
    """

    name: str
    spec: ActionSpec
    logits_SK: torch.Tensor
    make_objective: ObjectiveFactory

    @property
    def num_actions(self) -> int:
        return self.spec.num_logits


def synthetic_problem(kind: str, num_actions: int, *, seed: int = 0, logit_scale: float = 1.0) -> Problem:
    """One synthetic instance with ``num_actions`` actions, reproducible from ``seed``.

    Logits ``l ~ logit_scale * N(0, 1)``. ``linear``: ``w ~ N(0, 1)``. ``quadratic``: ``w ~ N(0,1)``,
    ``A = (R + R^T) / 2`` with ``R ~ N(0, 1)``. ``kl``: target ``p = softmax(2 N(0, 1))``
    drawn independently of ``l`` (a peaked, different distribution). ``kl-multimodal``: the
    target of :func:`multimodal_target` with its defaults (modes placed by ``seed``).
    """
    if kind not in SYNTHETIC_KINDS:
        raise ValueError(f"unknown synthetic problem {kind!r}; choose one of {', '.join(SYNTHETIC_KINDS)}")
    if num_actions < 2:
        raise ValueError(f"a synthetic problem needs at least 2 actions, got {num_actions}")
    gen = torch.Generator().manual_seed(seed * 1000 + num_actions)
    k = num_actions
    spec = ActionSpec((k,))
    logits_SK = logit_scale * torch.randn(1, k, generator=gen)
    w_SK = torch.randn(1, k, generator=gen)
    if kind == "linear":

        def make(logits_BK: torch.Tensor, rows_B: torch.Tensor) -> Objective:
            return LinearObjective(w_SK[rows_B], spec)

    elif kind == "quadratic":
        r = torch.randn(k, k, generator=gen)
        a_KK = 0.5 * (r + r.T)

        def make(logits_BK: torch.Tensor, rows_B: torch.Tensor) -> Objective:
            return QuadraticObjective(w_SK[rows_B], a_KK, spec)

    elif kind == "kl-multimodal":
        log_p_SK = multimodal_target(k, seed=seed).unsqueeze(0)

        def make(logits_BK: torch.Tensor, rows_B: torch.Tensor) -> Objective:
            return KLObjective(logits_BK, log_p_SK[rows_B], spec)

    else:
        log_p_SK = F.log_softmax(2.0 * torch.randn(1, k, generator=gen), dim=-1)

        def make(logits_BK: torch.Tensor, rows_B: torch.Tensor) -> Objective:
            return KLObjective(logits_BK, log_p_SK[rows_B], spec)

    return Problem(f"{kind}-K{k}", spec, logits_SK, make)


# ----------------------------------------------------------------------------- distillation


@dataclass(frozen=True)
class DistillCurve:
    """What :func:`distill` returns: the reverse KL along the optimisation.

    Attributes:
        steps: the optimisation steps at which the policy was scored (0 = before any step).
        kl: ``KL(pi || p*)`` of the stochastic policy at those steps (lower is better).
        mode_kl: ``KL(onehot(argmax pi) || p*) = -log p*(argmax pi)`` at the end: the score of
            the deterministic policy that acts with the mode.
    """

    steps: list[int]
    kl: list[float]
    mode_kl: float


def distill(
    log_target_K: torch.Tensor,
    estimator: str,
    *,
    tau: float,
    lr: float,
    steps: int,
    batch: int = 32,
    seed: int = 0,
    eval_every: int = 10,
    init_scale: float = 0.5,
    **options: Any,
) -> DistillCurve:
    """Fit logits ``l`` to a target ``p*`` by minimising ``KL(softmax(l) || p*)`` with ``estimator``.

    Policy distillation reduced to one state: ``f(a; l) = log q(a) - log p*(a)``
    (:class:`KLObjective`, whose ``E_q f`` is the reverse KL) and each step takes Adam
    (Kingma, Ba 2014, arXiv:1412.6980) on the mean of ``batch`` estimator surrogates, the
    estimator's only way to see the loss -- as the actor sees its critic. The logits start at
    ``init_scale * N(0, 1)`` from ``seed`` (a near-uniform policy, different per seed) and the
    estimator's draws come from the same seed, so a seed pairs runs across estimators.

    Args:
        log_target_K: ``log p*`` (e.g. :func:`multimodal_target`).
        estimator: a registered estimator name; ``options`` go to ``get_estimator``.
        tau: the estimator's temperature (unused by score, score-sampled and exact).
        lr: Adam's learning rate.
        steps: optimisation steps.
        batch: estimator draws per step.
        seed: seeds the initial logits and the estimator's generator.
        eval_every: steps between two scores of the policy (the curve's resolution).
        init_scale: standard deviation of the initial logits.
    """
    from gumbel_ac.estimators import get_estimator  # noqa: PLC0415 (estimators import this module's types)

    if steps < 1 or batch < 1 or eval_every < 1:
        raise ValueError(f"distill needs steps, batch, eval_every >= 1, got {steps}, {batch}, {eval_every}")
    fn = get_estimator(estimator, **options)
    k = int(log_target_K.shape[-1])
    spec = ActionSpec((k,))
    gen = torch.Generator().manual_seed(seed)
    logits_K = (init_scale * torch.randn(k, generator=gen)).requires_grad_(True)
    opt = torch.optim.Adam([logits_K], lr=lr)
    target_BK = log_target_K.float().expand(batch, k)
    curve_steps, curve_kl = [0], [reverse_kl(logits_K, log_target_K)]
    for step in range(1, steps + 1):
        logits_BK = logits_K.expand(batch, k)
        out = fn(logits_BK, KLObjective(logits_BK, target_BK, spec), spec, tau=tau, generator=gen)
        opt.zero_grad(set_to_none=True)
        out.surrogate_B.mean().backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            curve_steps.append(step)
            curve_kl.append(reverse_kl(logits_K, log_target_K))
    mode = int(logits_K.detach().argmax())
    return DistillCurve(curve_steps, curve_kl, float(-log_target_K[mode].double()))


# ----------------------------------------------------------------------------- real problem


def collect_states(
    agent: Any,
    env: Any,
    *,
    num_states: int,
    rollout_steps: int,
    seed: int,
) -> torch.Tensor:
    """States visited by the agent's own (stochastic) policy: ``[num_states, D]``.

    Runs ``rollout_steps`` vector steps of ``env`` (a ``BatchedEnv``) acting with
    ``agent.act`` (the policy's own Gumbel-max sampler, seeded), then picks ``num_states`` of
    the visited observations uniformly without replacement (seeded). ``agent`` and ``env``
    live on the CPU (the seeded generator is a CPU one).
    """
    gen = torch.Generator().manual_seed(seed)
    spec: ActionSpec = agent.spec
    obs = env.reset(seed=seed)
    seen = [obs]
    with torch.no_grad():
        for _ in range(rollout_steps):
            index_BH = agent.act(obs, generator=gen)
            actions = index_BH[:, 0] if spec.num_heads == 1 else index_BH
            obs = env.step(actions).obs
            seen.append(obs)
    pool = torch.cat([o.reshape(o.shape[0], -1).float().cpu() for o in seen], dim=0)
    pick = torch.randperm(pool.shape[0], generator=gen)[: min(num_states, pool.shape[0])]
    return pool[pick]


def agent_problem(agent: Any, states_SD: torch.Tensor, *, name: str = "critic") -> Problem:
    """``f = min_i Q_i(s, .)`` of a trained agent at each of the given states.

    ``logits_SK`` are the actor's logits (detached: the lab measures the gradient w.r.t. the
    logits, the part the estimators differ in; the actor network's Jacobian is common).
    """
    with torch.no_grad():
        logits_SK = agent.logits(states_SD).detach().float()

    def make(logits_BK: torch.Tensor, rows_B: torch.Tensor) -> Objective:
        return agent.q_objective(states_SD[rows_B.to(states_SD.device)])

    return Problem(name, agent.spec, logits_SK, make)


def _env_id(config: Any) -> str | None:
    for key in ("env_id", "env", "env_name"):
        value = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
        if isinstance(value, str):
            return value
    return None


def load_run_problem(
    run_dir: str,
    *,
    num_states: int = 16,
    rollout_steps: int = 200,
    num_envs: int = 8,
    seed: int = 0,
    env_id: str | None = None,
) -> Problem:
    """The real problem of a run folder: its critic at states its own policy visits.

    Uses ``gumbel_ac.checkpoint.load_run`` (``.agent``, ``.config``) and
    ``gumbel_ac.vector.make_env``; imported here so the synthetic lab never needs them.
    """
    from gumbel_ac.checkpoint import load_run  # noqa: PLC0415 (optional, heavy)
    from gumbel_ac.vector import eval_env_kwargs, make_env  # noqa: PLC0415

    run = load_run(run_dir)
    own_env = _env_id(run.config)
    env_id = env_id or own_env
    if env_id is None:
        raise ValueError(f"cannot tell the env id of run {run_dir!r} from its config; pass --env")
    # The run's own env is rebuilt as it was trained (a DeepSea of size 20 stays size 20); an
    # env named instead gets its defaults. Evaluation's rule for which kwargs carry over.
    kwargs = eval_env_kwargs(run.config.env_kwargs_dict()) if env_id == own_env else {}
    env = make_env(env_id, num_envs=num_envs, device="cpu", seed=seed, **kwargs)
    states = collect_states(run.agent, env, num_states=num_states, rollout_steps=rollout_steps, seed=seed)
    return agent_problem(run.agent, states, name=f"critic-{env_id}")
