"""The estimator lab: every discrete gradient estimator measured against the exact gradient.

For ``f`` a function of a one-hot action (and maybe of the logits ``l``), the gradient of
``E_{a ~ softmax(l)} f(a)`` is computable exactly by summing over the actions (the
``exact`` estimator). For every estimator, from ``M`` independent draws under a fixed seed,
the lab reports

* ``bias``     = ``||mean_m g_m - g*|| / ||g*||`` and ``cosine(mean_m g_m, g*)``;
* ``bias_noise`` = ``sqrt(variance / M) / ||g*||``: the relative bias a *zero-bias*
  estimator shows from Monte-Carlo noise alone (compare ``bias`` with it);
* ``variance`` = ``mean_m ||g_m - mean g||^2`` (single-draw variance, summed over logits);
* ``mse``      = ``mean_m ||g_m - g*||^2`` (= variance + squared bias);

as functions of the temperature tau (and of the number of draws R for gumbel-rao). All
estimators share the seed (common random numbers: the sampling ones see the same actions).

Run ``python -m gumbel_ac.lab --help``. Problems: synthetic ``linear``/``quadratic``/``kl``
(and ``kl-multimodal`` on request) with K in {2, 8, 64} (``gumbel_ac.lab_problems``), or
``--run runs/<name>`` for a trained agent's own critic at states its policy visits. Writes
``results.csv`` and one PNG per problem (bias, variance and MSE vs tau, log scale) to ``--out``.

Shape legend: ``S`` instances (states), ``M`` draws, ``B = S * M`` rows, ``K`` logits.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from gumbel_ac.estimators import ESTIMATORS, MIN_TAU, get_estimator
from gumbel_ac.lab_problems import DEFAULT_KINDS, SYNTHETIC_KINDS, Problem, load_run_problem, synthetic_problem

#: Default temperature grid: log-spaced 0.1 .. 1 (5 points) and 1 .. 2 (3 points) so that
#: reinmax (tau >= 1 only) gets three points.
DEFAULT_TAUS: tuple[float, ...] = tuple(
    float(t) for t in np.unique(np.round(np.r_[np.geomspace(0.1, 1.0, 5), np.geomspace(1.0, 2.0, 3)], 4))
)
DEFAULT_RAO_SAMPLES: tuple[int, ...] = (1, 10, 100)
#: Estimators without a temperature: measured once per problem.
TAU_FREE = frozenset({"score", "score-sampled", "exact"})
#: Largest number of rows x conditional draws per estimator call (bounds memory).
MAX_ROWS = 1 << 21


@dataclass(frozen=True)
class Variant:
    """One estimator configuration of the lab: registry name + options, with a label."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.name == "gumbel-rao":
            return f"gumbel-rao-{self.options['rao_samples']}"
        return self.name

    def taus(self, grid: Sequence[float]) -> list[float]:
        """The temperatures this variant is measured at (NaN stands for "no temperature")."""
        if self.name in TAU_FREE:
            return [math.nan]
        low = MIN_TAU.get(self.name, 0.0)
        return [t for t in grid if t >= low]

    def cost(self) -> int:
        return int(self.options.get("rao_samples", 1))


def default_variants(
    names: Sequence[str] | None = None, rao_samples: Sequence[int] = DEFAULT_RAO_SAMPLES
) -> list[Variant]:
    """Every registered estimator (or ``names``), gumbel-rao once per ``rao_samples``."""
    out: list[Variant] = []
    for name in names or list(ESTIMATORS):
        get_estimator(name)  # clear error for unknown names
        if name == "gumbel-rao":
            out.extend(Variant(name, {"rao_samples": int(r)}) for r in rao_samples)
        else:
            out.append(Variant(name))
    return out


@dataclass(frozen=True)
class Measurement:
    """One row of the lab's table (metrics averaged over the problem's instances)."""

    problem: str
    num_actions: int
    estimator: str
    tau: float
    draws: int
    bias: float
    bias_noise: float
    cosine: float
    variance: float
    mse: float
    exact_norm: float


def exact_gradient(problem: Problem) -> torch.Tensor:
    """``grad_l E_{a~softmax(l)} f(a)`` for every instance, ``[S, K]``, by summing over actions."""
    logits = problem.logits_SK.clone().requires_grad_(True)
    rows = torch.arange(logits.shape[0])
    out = ESTIMATORS["exact"](logits, problem.make_objective(logits, rows), problem.spec, tau=1.0)
    (grad,) = torch.autograd.grad(out.surrogate_B.sum(), logits)
    return grad.detach()


def draw_gradients(problem: Problem, variant: Variant, tau: float, *, draws: int, seed: int) -> torch.Tensor:
    """``M`` single-draw estimates of the gradient w.r.t. the logits: ``[S, M, K]``.

    The ``S * M`` draws are the batch of one estimator call (chunked by instance if large):
    each row's surrogate depends only on its own copy of the logits, so one backward pass
    yields every per-draw gradient.
    """
    estimator = get_estimator(variant.name, **variant.options)
    gen = torch.Generator().manual_seed(seed)
    s_count, k = problem.logits_SK.shape
    per_chunk = max(1, MAX_ROWS // max(1, draws * k * variant.cost()))
    chunks = []
    for start in range(0, s_count, per_chunk):
        rows = torch.arange(start, min(s_count, start + per_chunk)).repeat_interleave(draws)
        logits = problem.logits_SK[rows].clone().requires_grad_(True)
        tau_arg = 1.0 if math.isnan(tau) else tau
        out = estimator(logits, problem.make_objective(logits, rows), problem.spec, tau=tau_arg, generator=gen)
        (grad,) = torch.autograd.grad(out.surrogate_B.sum(), logits)
        chunks.append(grad.detach().view(-1, draws, k))
    return torch.cat(chunks, dim=0)


def summarize(grads_SMK: torch.Tensor, exact_SK: torch.Tensor) -> dict[str, float]:
    """Bias / cosine / variance / MSE of draws ``[S, M, K]`` against ``exact [S, K]``.

    With several instances (states) the relative bias and the cosine are *pooled*, i.e.
    computed on the ``S * K`` vector of all instances' gradients -- a per-state ratio would
    be dominated by states where the policy is nearly deterministic and ``||g*||`` ~ 0.
    Variance and MSE are means over instances. For one instance these are the plain
    definitions of the module docstring.
    """
    g = grads_SMK.double()
    ex = exact_SK.double()
    draws = g.shape[1]
    mean_SK = g.mean(1)
    norm2 = ex.pow(2).sum().clamp_min(1e-300)
    variance_S = (g - mean_SK[:, None]).pow(2).sum(-1).mean(1)
    mse_S = (g - ex[:, None]).pow(2).sum(-1).mean(1)
    cosine = torch.nn.functional.cosine_similarity(mean_SK.reshape(1, -1), ex.reshape(1, -1), dim=-1, eps=1e-30)
    return {
        "bias": float(((mean_SK - ex).pow(2).sum() / norm2).sqrt()),
        "bias_noise": float((variance_S.sum() / draws / norm2).sqrt()),
        "cosine": float(cosine[0]),
        "variance": float(variance_S.mean()),
        "mse": float(mse_S.mean()),
        "exact_norm": float(ex.norm(dim=-1).mean()),
    }


def measure(
    problem: Problem,
    variants: Sequence[Variant],
    taus: Sequence[float],
    *,
    draws: int = 1000,
    seed: int = 0,
) -> list[Measurement]:
    """Every variant at every applicable tau on one problem."""
    exact_SK = exact_gradient(problem)
    rows = []
    for variant in variants:
        for tau in variant.taus(taus):
            grads = draw_gradients(problem, variant, tau, draws=draws, seed=seed)
            rows.append(
                Measurement(problem.name, problem.num_actions, variant.label, tau, draws, **summarize(grads, exact_SK))
            )
    return rows


# ----------------------------------------------------------------------------- output


def write_csv(rows: Sequence[Measurement], path: str) -> None:
    """All measurements, one per line."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(Measurement.__dataclass_fields__))
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))


def _fmt(x: float) -> str:
    return "      -" if math.isnan(x) else f"{x:7.1e}" if (x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e3)) else f"{x:7.3f}"


def format_table(rows: Sequence[Measurement], metrics: Sequence[str] = ("bias", "variance", "mse")) -> str:
    """Per problem and metric: estimators down, temperatures across (tau-free ones in column ``-``)."""
    lines: list[str] = []
    problems = list(dict.fromkeys(r.problem for r in rows))
    for prob in problems:
        sub = [r for r in rows if r.problem == prob]
        taus = sorted({r.tau for r in sub if not math.isnan(r.tau)})
        labels = list(dict.fromkeys(r.estimator for r in sub))
        norm = sub[0].exact_norm
        for metric in metrics:
            lines.append(f"\n{prob}  {metric}   (||exact grad|| = {norm:.3g}, draws = {sub[0].draws})")
            lines.append(f"{'estimator':<14}" + f"{'-':>8}" + "".join(f"{t:>8.3g}" for t in taus))
            for label in labels:
                cells = {
                    (r.tau if not math.isnan(r.tau) else None): getattr(r, metric) for r in sub if r.estimator == label
                }
                row = f"{label:<14}" + f"{_fmt(cells[None]) if None in cells else '':>8}"
                row += "".join(f"{_fmt(cells[t]) if t in cells else '':>8}" for t in taus)
                lines.append(row)
    return "\n".join(lines)


def plot(rows: Sequence[Measurement], out_dir: str) -> list[str]:
    """One PNG per problem: bias, variance and MSE vs tau (log-log), one line per estimator.

    Temperature-free estimators (score, exact) are horizontal dashed lines. Zeros (the exact
    estimator's variance, softmax-st's) cannot sit on a log axis: they are drawn at the
    panel's floor and marked "(0)" in the legend.
    """
    import matplotlib  # noqa: PLC0415 (keep matplotlib out of the estimator imports)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    paths = []
    for prob in dict.fromkeys(r.problem for r in rows):
        sub = [r for r in rows if r.problem == prob]
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
        for ax, metric in zip(axes, ("bias", "variance", "mse"), strict=True):
            positive = [getattr(r, metric) for r in sub if getattr(r, metric) > 0]
            floor = min(positive) / 10 if positive else 1e-12
            for i, label in enumerate(dict.fromkeys(r.estimator for r in sub)):
                pts = sorted((r.tau, getattr(r, metric)) for r in sub if r.estimator == label)
                color = f"C{i % 10}"
                zero = any(v <= 0 for _, v in pts)
                name = label + (" (0)" if zero else "")
                if math.isnan(pts[0][0]):
                    ax.axhline(max(pts[0][1], floor), color=color, linestyle="--", label=name)
                else:
                    ax.plot([t for t, _ in pts], [max(v, floor) for _, v in pts], "o-", color=color, label=name)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("temperature tau")
            ax.set_title(
                {
                    "bias": "relative bias ||E g - g*|| / ||g*||",
                    "variance": "variance E||g - E g||^2",
                    "mse": "MSE E||g - g*||^2",
                }[metric]
            )
            ax.grid(True, which="both", alpha=0.3)
        axes[-1].legend(fontsize=8, loc="best")
        fig.suptitle(f"{prob}: gradient estimators vs exact ({sub[0].draws} draws)")
        fig.tight_layout()
        path = os.path.join(out_dir, f"{prob}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gumbel_ac.lab",
        description="Measure bias, variance and MSE of every discrete gradient estimator against the "
        "exact gradient, as functions of the temperature tau.",
    )
    p.add_argument(
        "--problems",
        nargs="+",
        default=list(DEFAULT_KINDS),
        choices=SYNTHETIC_KINDS,
        help=f"synthetic problems to run (default: {' '.join(DEFAULT_KINDS)}; ignored with --run)",
    )
    p.add_argument(
        "--num-actions",
        "-K",
        nargs="+",
        type=int,
        default=[2, 8, 64],
        help="numbers of actions K of the synthetic problems (default: %(default)s)",
    )
    p.add_argument(
        "--estimators",
        nargs="+",
        default=None,
        metavar="NAME",
        help=f"estimators to measure (default: all of {', '.join(ESTIMATORS)})",
    )
    p.add_argument(
        "--taus",
        nargs="+",
        type=float,
        default=list(DEFAULT_TAUS),
        help=f"temperature grid (default: {' '.join(f'{t:g}' for t in DEFAULT_TAUS)}; reinmax uses only tau >= 1)",
    )
    p.add_argument(
        "--rao-samples",
        nargs="+",
        type=int,
        default=list(DEFAULT_RAO_SAMPLES),
        help="conditional Gumbel draws R of gumbel-rao, one line per value (default: "
        f"{' '.join(map(str, DEFAULT_RAO_SAMPLES))})",
    )
    p.add_argument(
        "--draws",
        "-M",
        type=int,
        default=1000,
        help="independent draws per measurement (default: %(default)s; at least 2)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the problems and of every estimator's draws (default: %(default)s)"
    )
    p.add_argument(
        "--logit-scale", type=float, default=1.0, help="synthetic logits ~ scale * N(0, 1) (default: %(default)s)"
    )
    p.add_argument(
        "--run",
        default=None,
        metavar="RUN_DIR",
        help="measure on a trained run's critic at states visited by its policy instead",
    )
    p.add_argument("--env", default=None, help="env id for --run (default: from the run's config)")
    p.add_argument("--states", type=int, default=16, help="states sampled for --run (default: %(default)s)")
    p.add_argument(
        "--rollout-steps",
        type=int,
        default=200,
        help="vector steps run to collect states for --run (default: %(default)s)",
    )
    p.add_argument(
        "--out", default="lab_out", help="output folder for results.csv and the PNG plots (default: %(default)s)"
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default: %(default)s; 1 is fastest on a shared CPU)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.draws < 2:
        print("error: --draws must be >= 2 (the variance needs two draws)", file=sys.stderr)
        return 2
    if any(not (t > 0 and math.isfinite(t)) for t in args.taus):
        print(f"error: every --taus value must be > 0 and finite, got {args.taus}", file=sys.stderr)
        return 2
    try:
        variants = default_variants(args.estimators, args.rao_samples)
        for r in args.rao_samples:
            get_estimator("gumbel-rao", rao_samples=r)
        if args.run:
            problems = [
                load_run_problem(
                    args.run, num_states=args.states, rollout_steps=args.rollout_steps, seed=args.seed, env_id=args.env
                )
            ]
        else:
            problems = [
                synthetic_problem(kind, k, seed=args.seed, logit_scale=args.logit_scale)
                for kind in args.problems
                for k in args.num_actions
            ]
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    rows: list[Measurement] = []
    for problem in problems:
        found = measure(problem, variants, args.taus, draws=args.draws, seed=args.seed)
        rows.extend(found)
        print(format_table(found), flush=True)
    csv_path = os.path.join(args.out, "results.csv")
    write_csv(rows, csv_path)
    print(f"\nwrote {csv_path}")
    if not args.no_plots:
        for path in plot(rows, args.out):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
