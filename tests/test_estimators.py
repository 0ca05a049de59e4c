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
STRAIGHT_THROUGH = ["gumbel-st", "softmax-st", "gumbel-rao", "reinmax", "gst"]
#: Estimators whose action is a Categorical(pi) sample (all but softmax-st's mode).
SAMPLING = [n for n in ALL if n != "softmax-st"]


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
    assert ((action == 0) | (action == 1)).all()
    # the surrogate's value is f at the hard action, exactly
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
    # softmax-st picks the mode but advances the generator by the same amount
    gen = torch.Generator().manual_seed(11)
    get_estimator("softmax-st")(logits, obj, spec, tau=1.0, generator=gen)
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
