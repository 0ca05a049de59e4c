"""Shared tests every registered estimator passes, and each estimator's defining formula.

Every registered estimator goes through the shared tests (one-hot forward where it applies,
numerical edges, multi-head specs, temperature validation); each estimator's defining
formula is checked on hand-built inputs. Statistical tests use fixed seeds and bounds from
the sample standard deviation (or a chi-square / Kolmogorov-Smirnov critical value at
alpha = 1e-3), so they are deterministic and not flaky.
"""

from __future__ import annotations

import math

import pytest
import torch

from gumbel_ac.distributions import ActionSpec, sample_gumbel
from gumbel_ac.estimators import (
    ESTIMATORS,
    _gumbel_perturb,
    conditional_gumbels,
    gapped_logits,
    get_estimator,
    reinmax_gradient,
    validate_estimator_options,
)
from gumbel_ac.lab_problems import LinearObjective, QuadraticObjective

torch.set_num_threads(1)

ALL = sorted(ESTIMATORS)
#: Estimators whose action into f is a hard one-hot (straight-through or score).
HARD = [n for n in ALL if n not in ("gumbel-soft", "exact")]
STRAIGHT_THROUGH = ["gumbel-st", "softmax-st", "st-sampled-nonoise", "st-mode-noisy", "gumbel-rao", "reinmax", "gst"]
#: Estimators whose action is the mode argmax(l), not a sample.
MODE = ["softmax-st", "st-mode-noisy"]
#: Estimators whose action is a Categorical(pi) sample.
SAMPLING = [n for n in ALL if n not in MODE]
#: Estimators whose surrogate's value averages f over several draws (the first is index_BH).
MULTI_DRAW = ["score-sampled"]


def tau_for(name: str) -> float:
    """A temperature every estimator accepts (reinmax needs tau >= 1)."""
    return 1.5 if name == "reinmax" else 0.7


class Recording:
    """Objective wrapper that keeps the action ``f`` was evaluated at."""

    def __init__(self, inner: LinearObjective) -> None:
        self.inner, self.actions = inner, []

    def at(self, action_BK: torch.Tensor) -> torch.Tensor:
        self.actions.append(action_BK)
        return self.inner.at(action_BK)

    def all(self) -> torch.Tensor:
        return self.inner.all()


def linear(spec: ActionSpec, batch: int, seed: int = 0) -> LinearObjective:
    w = torch.randn(spec.num_logits, generator=torch.Generator().manual_seed(seed))
    return LinearObjective(w.expand(batch, -1), spec)


def run(name: str, logits: torch.Tensor, spec: ActionSpec, objective, *, tau=None, seed: int = 0, **options):
    gen = torch.Generator().manual_seed(seed)
    fn = get_estimator(name, **options)
    return fn(logits, objective, spec, tau=tau_for(name) if tau is None else tau, generator=gen)


def grad_of(out, logits: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(out.surrogate_B.sum(), logits)
    return g


def softmax_jacobian_times(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``J(p) v = p * v - p <p, v>`` (J symmetric)."""
    return p * v - p * (p * v).sum(-1, keepdim=True)


# ----------------------------------------------------------------------------- shared


@pytest.mark.parametrize("name", HARD)
@pytest.mark.parametrize("nvec", [(5,), (3, 4)])
def test_forward_is_exactly_one_hot(name: str, nvec: tuple[int, ...]) -> None:
    spec = ActionSpec(nvec)
    logits = (3 * torch.randn(64, spec.num_logits, generator=torch.Generator().manual_seed(1))).requires_grad_()
    obj = Recording(linear(spec, 64))
    out = run(name, logits, spec, obj)
    action = obj.actions[0]
    assert out.index_BH.shape == (64, spec.num_heads) and out.index_BH.dtype == torch.int64
    assert torch.equal(action, spec.onehot(out.index_BH, dtype=action.dtype))  # bit-exact ==
    for a in obj.actions:
        assert ((a == 0) | (a == 1)).all() and torch.equal(a.sum(-1), torch.full((64,), float(spec.num_heads)))
    if name in MULTI_DRAW:  # the value is the mean of f over the draws, the first being index_BH
        assert len(obj.actions) > 1
        expected = torch.stack([obj.inner.at(a.detach()) for a in obj.actions]).mean(0)
        torch.testing.assert_close(out.surrogate_B.detach(), expected)
    else:  # the surrogate's value is f at the hard action, exactly
        assert len(obj.actions) == 1
        assert torch.equal(out.surrogate_B.detach(), obj.inner.at(spec.onehot(out.index_BH)))


def test_gumbel_st_backward_is_relaxed_sample_gradient() -> None:
    spec = ActionSpec((6,))
    logits = torch.randn(32, 6, generator=torch.Generator().manual_seed(2)).requires_grad_()
    obj = linear(spec, 32)
    out = run("gumbel-st", logits, spec, obj, tau=0.5, seed=7)
    # the same noise, from the same seed, through the relaxed sample softmax((l + G) / tau)
    g = sample_gumbel(logits.shape, generator=torch.Generator().manual_seed(7))
    relaxed = torch.softmax((logits + g) / 0.5, dim=-1)
    expected = grad_of(type(out)(obj.at(relaxed), out.index_BH), logits)
    torch.testing.assert_close(grad_of(out, logits), expected)
    assert torch.equal(out.index_BH[:, 0], (logits + g).argmax(-1))


def test_sampling_estimators_share_the_sample_under_one_seed() -> None:
    spec = ActionSpec((3, 5))
    logits = torch.randn(200, spec.num_logits, generator=torch.Generator().manual_seed(3))
    obj = linear(spec, 200)
    indices = [run(n, logits, spec, obj, seed=11).index_BH for n in SAMPLING]
    for idx in indices[1:]:
        assert torch.equal(idx, indices[0])
    # the mode estimators pick the mode but advance the generator by the same amount
    for mode in MODE:
        assert torch.equal(run(mode, logits, spec, obj, seed=11).index_BH, spec.mode(logits))
        gen = torch.Generator().manual_seed(11)
        get_estimator(mode)(logits, obj, spec, tau=1.0, generator=gen)
        gen2 = torch.Generator().manual_seed(11)
        get_estimator("gumbel-st")(logits, obj, spec, tau=1.0, generator=gen2)
        assert torch.equal(torch.rand(4, generator=gen), torch.rand(4, generator=gen2))


def _chi_square_critical(df: int, z: float = 3.09) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile (z = 3.09: alpha = 1e-3)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def test_gumbel_max_frequencies_match_softmax() -> None:
    spec = ActionSpec((6,))
    logits = torch.tensor([[1.5, 0.2, -1.0, 0.7, -0.3, 0.0]])
    n = 30_000
    _, index = _gumbel_perturb(logits.expand(n, -1), spec, torch.Generator().manual_seed(0))
    counts = torch.bincount(index[:, 0], minlength=6).double()
    expected = n * torch.softmax(logits[0].double(), -1)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < _chi_square_critical(5), chi2  # 20.5 at alpha = 1e-3 (exact: 20.52)


def test_score_mean_gradient_matches_exact_within_noise() -> None:
    spec = ActionSpec((5,))
    n = 20_000
    base = torch.tensor([0.5, -0.2, 1.0, 0.0, -1.5])
    logits = base.expand(n, -1).clone().requires_grad_()
    obj = linear(spec, n, seed=4)
    grads = grad_of(run("score", logits, spec, obj, seed=5), logits)
    exact = softmax_jacobian_times(torch.softmax(base, -1), obj.w_BK[0])
    sem = grads.std(0) / math.sqrt(n)
    assert ((grads.mean(0) - exact).abs() < 5 * sem + 1e-7).all(), (grads.mean(0), exact, sem)


def test_exact_matches_analytic_gradient() -> None:
    spec = ActionSpec((7,))
    logits = torch.randn(16, 7, generator=torch.Generator().manual_seed(6)).requires_grad_()
    obj = linear(spec, 16, seed=6)
    torch.testing.assert_close(
        grad_of(run("exact", logits, spec, obj), logits),
        softmax_jacobian_times(torch.softmax(logits.detach(), -1), obj.w_BK),
    )


def test_exact_matches_analytic_gradient_multi_head() -> None:
    spec = ActionSpec((2, 3))
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(8)).requires_grad_()
    obj = linear(spec, 4, seed=8)  # linear f of the concatenation: heads decouple
    expected = torch.cat(
        [
            softmax_jacobian_times(torch.softmax(lg, -1), w)
            for lg, w in zip(spec.split(logits.detach()), spec.split(obj.w_BK), strict=True)
        ],
        dim=-1,
    )
    torch.testing.assert_close(grad_of(run("exact", logits, spec, obj), logits), expected)


EDGE_CASES = {
    "tiny-tau": (lambda: torch.randn(32, 6, generator=torch.Generator().manual_seed(0)), 1e-8),
    "huge-logits": (lambda: torch.tensor([[1e30, 0.0, -1e30, 5.0, 1e30, -3.0]]).expand(32, -1).clone(), 0.5),
    "bf16": (lambda: torch.randn(32, 6, generator=torch.Generator().manual_seed(0)).bfloat16(), 0.5),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
@pytest.mark.parametrize("name", ALL)
def test_no_nan_or_inf_at_numerical_edges(name: str, case: str) -> None:
    make, tau = EDGE_CASES[case]
    if name == "reinmax":
        tau = max(tau, 1.0)  # reinmax refuses tau < 1 (tested below)
    spec = ActionSpec((6,))
    logits = make().requires_grad_()
    obj = linear(spec, logits.shape[0])
    out = run(name, logits, spec, obj, tau=tau)
    grad = grad_of(out, logits)
    assert torch.isfinite(out.surrogate_B).all()
    assert torch.isfinite(grad.float()).all()
    assert grad.dtype == logits.dtype


@pytest.mark.parametrize("name", ALL)
def test_masked_actions_never_chosen_and_finite(name: str) -> None:
    spec = ActionSpec((3, 5))
    n = 2000
    logits = torch.randn(n, 8, generator=torch.Generator().manual_seed(9))
    masked = torch.zeros(8, dtype=torch.bool)
    masked[[1, 4, 7]] = True  # head 0: action 1; head 1: actions 1 and 4
    logits = logits.masked_fill(masked, -math.inf).requires_grad_()
    obj = linear(spec, n)
    out = run(name, logits, spec, obj)
    assert not (out.index_BH[:, 0] == 1).any()
    assert not torch.isin(out.index_BH[:, 1], torch.tensor([1, 4])).any()
    grad = grad_of(out, logits)
    assert torch.isfinite(out.surrogate_B).all() and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("tau", [0.0, -1.0, math.inf, math.nan])
def test_bad_tau_is_an_error(name: str, tau: float) -> None:
    spec = ActionSpec((3,))
    logits = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="tau"):
        run(name, logits, spec, linear(spec, 2), tau=tau)
    with pytest.raises(ValueError, match="tau"):
        validate_estimator_options(name, tau)


@pytest.mark.parametrize("name", ALL)
def test_tensor_tau_gives_the_same_result_without_host_reads(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ActionSpec((2, 3))
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(1)).requires_grad_()
    obj = linear(spec, 8)
    tau = tau_for(name)
    expected = grad_of(run(name, logits, spec, obj, tau=tau), logits)

    def no_host_read(*_a, **_k):
        raise AssertionError("an estimator read the temperature back to the host")

    tau_t = torch.tensor(tau)
    monkeypatch.setattr(torch.Tensor, "item", no_host_read)
    monkeypatch.setattr(torch.Tensor, "__float__", no_host_read)
    monkeypatch.setattr(torch.Tensor, "__bool__", no_host_read)
    out = run(name, logits, spec, obj, tau=tau_t)
    monkeypatch.undo()
    torch.testing.assert_close(grad_of(out, logits), expected)


@pytest.mark.parametrize("name", ALL)
def test_multi_head_spec(name: str) -> None:
    spec = ActionSpec((2, 3, 4))
    logits = torch.randn(50, 9, generator=torch.Generator().manual_seed(2)).requires_grad_()
    r = torch.randn(9, 9, generator=torch.Generator().manual_seed(3))
    obj = QuadraticObjective(torch.randn(50, 9), r + r.T, spec)  # couples the heads
    out = run(name, logits, spec, obj)
    assert out.surrogate_B.shape == (50,) and out.index_BH.shape == (50, 3)
    for h, n in enumerate(spec.nvec):
        assert ((out.index_BH[:, h] >= 0) & (out.index_BH[:, h] < n)).all()
    grad = grad_of(out, logits)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    for g in spec.split(grad):  # every head's logit gradient sums to zero (softmax invariance)
        torch.testing.assert_close(g.sum(-1), torch.zeros(50), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- options


def test_get_estimator_options() -> None:
    assert get_estimator("gumbel-st") is ESTIMATORS["gumbel-st"]
    rao = get_estimator("gumbel-rao", rao_samples=7)
    assert rao.keywords == {"rao_samples": 7}
    assert get_estimator("gst", gap="p").keywords == {"gap": "p"}
    # an option known to another estimator is validated and ignored (configs pass it always)
    assert get_estimator("gumbel-st", rao_samples=10) is ESTIMATORS["gumbel-st"]
    for bad in (0, -3, 1.5, "10", True):
        with pytest.raises(ValueError, match="rao_samples"):
            get_estimator("gumbel-rao", rao_samples=bad)
    with pytest.raises(ValueError, match="gap"):
        get_estimator("gst", gap=-1.0)
    with pytest.raises(ValueError, match="unknown estimator option"):
        get_estimator("gumbel-rao", rao_sample=10)
    with pytest.raises(ValueError, match="unknown estimator 'gumbel'.*gumbel-st"):
        get_estimator("gumbel")


def test_reinmax_refuses_tau_below_one() -> None:
    spec = ActionSpec((3,))
    with pytest.raises(ValueError, match="tau >= 1"):
        validate_estimator_options("reinmax", 0.5)
    with pytest.raises(ValueError, match="tau >= 1"):
        run("reinmax", torch.zeros(2, 3, requires_grad=True), spec, linear(spec, 2), tau=0.99)
    validate_estimator_options("reinmax", 1.0, rao_samples=10)
    validate_estimator_options("gumbel-st", 0.1, rao_samples=10)


# ----------------------------------------------------------------------------- formulas


def test_softmax_st_formula() -> None:
    spec = ActionSpec((4,))
    logits = torch.tensor([[0.3, 2.0, -1.0, 1.9]] * 3, requires_grad=True)
    obj = linear(spec, 3)
    out = run("softmax-st", logits, spec, obj, tau=0.4, seed=0)
    assert (out.index_BH[:, 0] == 1).all()  # the mode, every time
    expected = softmax_jacobian_times(torch.softmax(logits.detach() / 0.4, -1), obj.w_BK) / 0.4
    torch.testing.assert_close(grad_of(out, logits), expected)


def test_conditional_gumbels_have_the_sampled_action_as_argmax() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([[2.0, -1.0, 0.5, -5.0], [0.0, 0.0, 0.0, 0.0], [-30.0, 10.0, 3.0, -math.inf]])
    for target in range(3):  # condition on every action, even very unlikely ones
        index = torch.full((3,), target)
        z = conditional_gumbels(logits, index, sample_gumbel((3, 500, 4), generator=gen))
        assert (z.argmax(-1) == target).all()
        assert torch.isneginf(z[2, :, 3]).all()  # masked stays masked
    # random logits, the index from an actual Gumbel-max draw
    logits = 2 * torch.randn(300, 8, generator=gen)
    index = (logits + sample_gumbel(logits.shape, generator=gen)).argmax(-1)
    z = conditional_gumbels(logits, index, sample_gumbel((300, 50, 8), generator=gen))
    assert (z.argmax(-1) == index[:, None]).all()


def test_conditional_gumbels_top_is_gumbel_of_logsumexp() -> None:
    """``max(l + G) ~ Gumbel(logsumexp l)`` independently of the argmax (the construction's basis)."""
    logits = torch.tensor([[1.0, -0.5, 0.3]])
    n = 40_000
    z = conditional_gumbels(
        logits, torch.tensor([1]), sample_gumbel((1, n, 3), generator=torch.Generator().manual_seed(1))
    )
    top = z[0, :, 1].double()
    mean = float(torch.logsumexp(logits[0].double(), -1)) + 0.5772156649
    assert abs(float(top.mean()) - mean) < 5 * math.pi / math.sqrt(6 * n)


def _ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    both = torch.cat([a, b]).sort().values
    cdf_a = torch.searchsorted(a.sort().values, both, right=True).double() / len(a)
    cdf_b = torch.searchsorted(b.sort().values, both, right=True).double() / len(b)
    return float((cdf_a - cdf_b).abs().max())


def test_gumbel_rao_with_one_sample_has_gumbel_st_distribution() -> None:
    spec = ActionSpec((4,))
    n = 6000
    base = torch.tensor([1.0, 0.0, -0.5, 0.4])
    obj = linear(spec, n, seed=3)
    grads = {}
    for name, opts, seed in (("gumbel-st", {}, 1), ("gumbel-rao", {"rao_samples": 1}, 2)):
        logits = base.expand(n, -1).clone().requires_grad_()
        grads[name] = grad_of(run(name, logits, spec, obj, tau=0.5, seed=seed, **opts), logits)
    st, rao = grads["gumbel-st"], grads["gumbel-rao"]
    critical = 1.95 * math.sqrt(2 / n)  # two-sample KS at alpha = 1e-3
    for k in range(4):
        assert _ks_statistic(st[:, k], rao[:, k]) < critical, k
        sem = math.sqrt((st[:, k].var() + rao[:, k].var()) / n)
        assert abs(float(st[:, k].mean() - rao[:, k].mean())) < 5 * sem
        for q in (0.1, 0.5, 0.9):
            assert abs(float(st[:, k].quantile(q) - rao[:, k].quantile(q))) < 0.05 + 0.1 * float(st[:, k].std())


def test_gumbel_rao_has_the_same_mean_and_less_variance_than_gumbel_st() -> None:
    spec = ActionSpec((5,))
    n = 4000
    base = torch.tensor([0.5, 1.0, -1.0, 0.0, 0.2])
    obj = linear(spec, n, seed=5)
    out = {}
    for name, opts in (("gumbel-st", {}), ("gumbel-rao", {"rao_samples": 20})):
        logits = base.expand(n, -1).clone().requires_grad_()
        out[name] = grad_of(run(name, logits, spec, obj, tau=0.3, seed=0, **opts), logits)
    st, rao = out["gumbel-st"], out["gumbel-rao"]
    sem = ((st.var(0) + rao.var(0)) / n).sqrt()
    assert ((st.mean(0) - rao.mean(0)).abs() < 5 * sem).all()
    assert rao.var(0).sum() < 0.5 * st.var(0).sum()


def test_reinmax_backward_formula_on_hand_built_inputs() -> None:
    logits = torch.tensor([[1.0, -0.5, 0.25, 2.0], [0.0, 0.0, 3.0, -math.inf]])
    hard = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    g = torch.tensor([[0.3, -1.2, 2.0, 0.5], [1.0, -2.0, 0.5, 4.0]])
    tau = 2.0
    pi0 = torch.softmax(logits, -1)
    pi1 = 0.5 * (torch.softmax(logits / tau, -1) + hard)

    def jac(p: torch.Tensor) -> torch.Tensor:  # J(p) = diag(p) - p p^T, built explicitly
        return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)

    expected = 2 * (jac(pi1) @ g.unsqueeze(-1)).squeeze(-1) - 0.5 * (jac(pi0) @ g.unsqueeze(-1)).squeeze(-1)
    expected = expected - expected.mean(-1, keepdim=True)
    torch.testing.assert_close(reinmax_gradient(logits, hard, g, tau), expected)


def test_reinmax_estimator_backward_uses_the_formula() -> None:
    spec = ActionSpec((4,))
    logits = torch.tensor([[1.0, -0.5, 0.25, 2.0]] * 16, requires_grad=True)
    obj = linear(spec, 16)
    out = run("reinmax", logits, spec, obj, tau=1.5, seed=3)
    hard = spec.onehot(out.index_BH)
    torch.testing.assert_close(grad_of(out, logits), reinmax_gradient(logits.detach(), hard, obj.w_BK, 1.5))


def test_gst_gapped_logits_by_hand() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    moved = gapped_logits(logits, torch.tensor([2]), 1.0)
    # sampled 0.5 -> raised to the max 2; 2.0 and 1.0 are within the gap -> lowered to 1; -1 untouched
    torch.testing.assert_close(moved, torch.tensor([[1.0, 1.0, 2.0, -1.0]]))
    # sampled = argmax: only logits within the gap move
    torch.testing.assert_close(gapped_logits(logits, torch.tensor([0]), 0.5), torch.tensor([[2.0, 1.0, 0.5, -1.0]]))
    torch.testing.assert_close(gapped_logits(logits, torch.tensor([0]), 1.5), torch.tensor([[2.0, 0.5, 0.5, -1.0]]))
    # adaptive gap GST-p: -log(1 - pi_D) / pi_D
    pi = torch.softmax(logits, -1)[0, 1] * (1 - 1e-5)
    kappa = float(-torch.log1p(-pi) / pi)
    moved = gapped_logits(logits, torch.tensor([1]), "p")
    assert moved.argmax() == 1 and abs(float(moved[0, 1] - moved[0, 0]) - kappa) < 1e-5


def test_gst_estimator_gradient_is_softmax_of_gapped_logits() -> None:
    spec = ActionSpec((5,))
    logits = torch.randn(40, 5, generator=torch.Generator().manual_seed(4)).requires_grad_()
    obj = linear(spec, 40)
    out = run("gst", logits, spec, obj, tau=0.8, seed=1)
    s = torch.softmax(gapped_logits(logits.detach(), out.index_BH[:, 0], 1.0) / 0.8, -1)
    assert (s.argmax(-1) == out.index_BH[:, 0]).all()  # the sample is the surrogate's argmax
    torch.testing.assert_close(grad_of(out, logits), softmax_jacobian_times(s, obj.w_BK) / 0.8)


# ----------------------------------------------------------------------------- the 2x2 and score-sampled


def quadratic(spec: ActionSpec, batch: int, seed: int = 0) -> QuadraticObjective:
    """``f(a) = <w, a> + a^T A a``: ``df/da = w + (A + A^T) a`` depends on the action."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(batch, spec.num_logits, generator=gen)
    return QuadraticObjective(w, torch.randn(spec.num_logits, spec.num_logits, generator=gen), spec)


def slope(obj: QuadraticObjective, action_BK: torch.Tensor) -> torch.Tensor:
    """``df/da`` of the quadratic at ``action``."""
    return obj.w_BK + action_BK @ (obj.a_KK + obj.a_KK.T)


def test_st_sampled_nonoise_formula() -> None:
    """Value f(a) at the Gumbel-max sample a; gradient J(softmax(l/tau)) df/da(a) / tau (no noise)."""
    spec = ActionSpec((5,))
    logits = torch.randn(64, 5, generator=torch.Generator().manual_seed(12)).requires_grad_()
    obj = quadratic(spec, 64, seed=13)
    out = run("st-sampled-nonoise", logits, spec, obj, tau=0.6, seed=4)
    g = sample_gumbel(logits.shape, generator=torch.Generator().manual_seed(4))
    index = (logits.detach() + g).argmax(-1)
    assert torch.equal(out.index_BH[:, 0], index)  # the same sample as gumbel-st's under one seed
    assert torch.equal(index, run("gumbel-st", logits, spec, obj, seed=4).index_BH[:, 0])
    d = spec.onehot(out.index_BH)
    torch.testing.assert_close(out.surrogate_B.detach(), obj.at(d))
    s = torch.softmax(logits.detach() / 0.6, -1)
    torch.testing.assert_close(grad_of(out, logits), softmax_jacobian_times(s, slope(obj, d)) / 0.6)
    assert (index != logits.detach().argmax(-1)).any()  # the sample is not always the mode here


def test_st_sampled_nonoise_equals_softmax_st_for_linear_f() -> None:
    """With a linear f the slope is the same at every action: the sample cannot matter."""
    spec = ActionSpec((3, 4))
    logits = torch.randn(32, 7, generator=torch.Generator().manual_seed(5)).requires_grad_()
    obj = linear(spec, 32, seed=5)
    a = grad_of(run("st-sampled-nonoise", logits, spec, obj, tau=0.3, seed=1), logits)
    b = grad_of(run("softmax-st", logits, spec, obj, tau=0.3, seed=2), logits)
    torch.testing.assert_close(a, b)


def test_st_mode_noisy_formula() -> None:
    """Value f at the mode; gradient J(softmax((l+G)/tau)) df/da(mode) / tau with gumbel-st's G."""
    spec = ActionSpec((6,))
    logits = torch.randn(64, 6, generator=torch.Generator().manual_seed(14)).requires_grad_()
    obj = quadratic(spec, 64, seed=15)
    out = run("st-mode-noisy", logits, spec, obj, tau=0.4, seed=9)
    mode = logits.detach().argmax(-1)
    assert torch.equal(out.index_BH[:, 0], mode)
    m = spec.onehot(out.index_BH)
    torch.testing.assert_close(out.surrogate_B.detach(), obj.at(m))
    g = sample_gumbel(logits.shape, generator=torch.Generator().manual_seed(9))
    y = torch.softmax((logits.detach() + g) / 0.4, -1)
    grad = grad_of(out, logits)
    torch.testing.assert_close(grad, softmax_jacobian_times(y, slope(obj, m)) / 0.4)
    # random through G: two seeds, two gradients (softmax-st's would be equal)
    other = grad_of(run("st-mode-noisy", logits, spec, obj, tau=0.4, seed=10), logits)
    assert not torch.allclose(other, grad)


def test_the_two_by_two_cells_differ_in_one_factor_each() -> None:
    """gumbel-st = (sample, noisy), st-sampled-nonoise = (sample, noise-free), st-mode-noisy =
    (mode, noisy), softmax-st = (mode, noise-free): along a row the action f sees is the same,
    along a column the softmax the gradient flows through is the same (checked on one seed)."""
    spec = ActionSpec((5,))
    logits = torch.randn(200, 5, generator=torch.Generator().manual_seed(16)).requires_grad_()
    obj = quadratic(spec, 200, seed=17)
    outs = {n: run(n, logits, spec, obj, tau=0.5, seed=3) for n in STRAIGHT_THROUGH[:4]}
    assert torch.equal(outs["gumbel-st"].index_BH, outs["st-sampled-nonoise"].index_BH)
    assert torch.equal(outs["softmax-st"].index_BH, outs["st-mode-noisy"].index_BH)
    assert not torch.equal(outs["gumbel-st"].index_BH, outs["softmax-st"].index_BH)
    g = sample_gumbel(logits.shape, generator=torch.Generator().manual_seed(3))
    noisy = torch.softmax((logits.detach() + g) / 0.5, -1)
    clean = torch.softmax(logits.detach() / 0.5, -1)
    for name, soft in (
        ("gumbel-st", noisy),
        ("st-sampled-nonoise", clean),
        ("st-mode-noisy", noisy),
        ("softmax-st", clean),
    ):
        at = slope(obj, spec.onehot(outs[name].index_BH))
        torch.testing.assert_close(grad_of(outs[name], logits), softmax_jacobian_times(soft, at) / 0.5)


def test_st_sampled_nonoise_mean_gradient_is_the_pi_weighted_slope() -> None:
    """E_a[J(s) df/da(a)] / tau with a ~ softmax(l): the mean over draws matches the enumerated sum."""
    spec = ActionSpec((4,))
    n = 20_000
    base = torch.tensor([0.8, -0.4, 0.1, 0.3])
    logits = base.expand(n, -1).clone().requires_grad_()
    obj = quadratic(spec, 1, seed=18)
    obj = QuadraticObjective(obj.w_BK.expand(n, -1), obj.a_KK, spec)
    grads = grad_of(run("st-sampled-nonoise", logits, spec, obj, tau=0.7, seed=6), logits)
    pi, s = torch.softmax(base, -1), torch.softmax(base / 0.7, -1)
    eye = torch.eye(4)
    expected = sum(pi[a] * softmax_jacobian_times(s, slope(obj, eye[a : a + 1])[0]) / 0.7 for a in range(4))
    sem = grads.std(0) / math.sqrt(n)
    assert ((grads.mean(0) - expected).abs() < 5 * sem + 1e-6).all(), (grads.mean(0), expected, sem)


class NotEnumerable:
    """An objective whose ``all()`` fails: what an estimator sees above the enumeration limit."""

    def __init__(self, inner: QuadraticObjective | LinearObjective) -> None:
        self.inner, self.calls = inner, 0

    def at(self, action_BK: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner.at(action_BK)

    def all(self) -> torch.Tensor:
        raise AssertionError("score-sampled must not enumerate the actions")


@pytest.mark.parametrize("samples", [2, 4, 7])
def test_score_sampled_never_enumerates_and_evaluates_f_s_times(samples: int) -> None:
    spec = ActionSpec((2, 3))
    logits = torch.randn(16, 5, generator=torch.Generator().manual_seed(19)).requires_grad_()
    obj = NotEnumerable(linear(spec, 16))
    out = run("score-sampled", logits, spec, obj, seed=2, score_samples=samples)
    assert obj.calls == samples
    assert torch.equal(out.index_BH, run("gumbel-st", logits, spec, linear(spec, 16), seed=2).index_BH)
    assert torch.isfinite(grad_of(out, logits)).all()


def test_score_sampled_leave_one_out_formula_by_hand() -> None:
    """Two draws: b_1 = f(a_2), b_2 = f(a_1), so the gradient is
    (1/2) [grad log pi(a_1) (f(a_1) - f(a_2)) + grad log pi(a_2) (f(a_2) - f(a_1))]."""
    spec = ActionSpec((4,))
    logits = torch.randn(300, 4, generator=torch.Generator().manual_seed(20)).requires_grad_()
    obj = Recording(linear(spec, 300, seed=21))
    out = run("score-sampled", logits, spec, obj, seed=8, score_samples=2)
    a1, a2 = (a.argmax(-1) for a in obj.actions)
    f1, f2 = (obj.inner.at(a) for a in obj.actions)
    pi = torch.softmax(logits.detach(), -1)
    eye = torch.eye(4)
    expected = 0.5 * ((eye[a1] - pi) * (f1 - f2)[:, None] + (eye[a2] - pi) * (f2 - f1)[:, None])
    torch.testing.assert_close(grad_of(out, logits), expected)
    assert (a1 != a2).any()


@pytest.mark.parametrize("objective", ["linear", "quadratic"])
def test_score_sampled_mean_gradient_matches_exact_within_noise(objective: str) -> None:
    spec = ActionSpec((5,))
    n = 20_000
    base = torch.tensor([0.5, -0.2, 1.0, 0.0, -1.5])
    logits = base.expand(n, -1).clone().requires_grad_()
    if objective == "linear":
        obj: LinearObjective | QuadraticObjective = linear(spec, n, seed=4)
    else:
        q = quadratic(spec, 1, seed=22)
        obj = QuadraticObjective(q.w_BK.expand(n, -1), q.a_KK, spec)
    grads = grad_of(run("score-sampled", logits, spec, obj, seed=5), logits)
    exact_logits = base.expand(1, -1).clone().requires_grad_()
    exact_obj = linear(spec, 1, seed=4) if objective == "linear" else QuadraticObjective(obj.w_BK[:1], obj.a_KK, spec)
    exact = grad_of(run("exact", exact_logits, spec, exact_obj), exact_logits)[0]
    sem = grads.std(0) / math.sqrt(n)
    assert ((grads.mean(0) - exact).abs() < 5 * sem + 1e-7).all(), (grads.mean(0), exact, sem)


def test_score_sampled_options() -> None:
    assert get_estimator("score-sampled", score_samples=6).keywords == {"score_samples": 6}
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="score_samples"):
            get_estimator("score-sampled", score_samples=bad)
