"""Cost of one gradient step: plain autograd vs the hand-written-backward network op (and more).

    python benchmarks/update_cost.py                       # batch 32, 64, 128 on the CPU
    python benchmarks/update_cost.py --device cuda --batch-sizes 128 4096
    python benchmarks/update_cost.py --compile             # also torch.compile of the loss

Implementations (the same gumbel-st step, same agent, same minibatch, same seeds):

- ``autograd``: the update with ``gumbel_ac.mlp_op.disabled()`` -- autograd through every op;
- ``op``: the update with the networks on :mod:`gumbel_ac.mlp_op` (one autograd node per
  network call, hand-written backward) -- the default;
- ``fused``: ``gumbel_ac.fused.FusedUpdate`` (the whole step's gradient by hand), only where
  that module still exists and imports;
- ``compile`` (``--compile``): ``torch.compile`` of the loss computation (``compute_losses``,
  networks on plain ops), backward/Adam/Polyak as usual; the first call's compile time is
  reported cold (empty Inductor cache dir) and warm (same cache, after ``torch._dynamo.reset()``).
  The compiled loss draws its Gumbel noise from torch's global RNG (``generator=None``: a
  ``torch.Generator`` argument does not trace) and takes the temperature as a 0-dim tensor.

Same agent shape as the defaults (width 64, twin critic, CartPole's 4 observations and 2
actions). The implementations alternate in blocks (autograd, op, fused, ..., autograd, ...)
so machine load hits all alike; medians over blocks; ratios are ``autograd / X`` (> 1: X is
faster). On CUDA each block ends with a synchronize.

Works with either update API of the package: ``gumbel_ac.learner.Learner`` (``step``) or the
older ``gumbel_ac.losses.update`` + ``make_optimizer``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from gumbel_ac import losses, mlp_op
from gumbel_ac.agent import Agent, make_agent
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.estimators import get_estimator
from gumbel_ac.losses import Batch

try:  # deleted once the loss maths lives only in losses.py
    from gumbel_ac.fused import FusedUpdate
except Exception:  # noqa: BLE001 -- any import failure means "not available"
    FusedUpdate = None  # type: ignore[assignment,misc]

try:
    from gumbel_ac import learner as learner_mod
except ImportError:
    learner_mod = None  # type: ignore[assignment]

GAMMA, TAU, RATE, LR = 0.995, 0.6, 0.2, 3e-3


def make_problem(batch_size: int, device: torch.device) -> tuple[Agent, Batch, torch.Generator]:
    torch.manual_seed(0)
    agent = make_agent(obs_dim=4, spec=ActionSpec([2]), hidden_sizes=(64, 64), alpha=0.5,
                       target_entropy_ratio=0.1).to(device)
    gen = torch.Generator(device=device).manual_seed(1)
    batch = Batch(
        obs_BD=torch.randn(batch_size, 4, device=device, generator=gen),
        action_BH=torch.randint(0, 2, (batch_size, 1), device=device, generator=gen),
        reward_B=torch.ones(batch_size, device=device),
        next_obs_BD=torch.randn(batch_size, 4, device=device, generator=gen),
        terminated_B=torch.rand(batch_size, device=device, generator=gen) < 0.02,
    )
    return agent, batch, gen


def _plain(step: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with mlp_op.disabled():
            return step()
    return run


def make_step(impl: str, batch_size: int, device: torch.device, compiled_loss: Any = None) -> Callable[[], object]:
    """A zero-argument callable running one full update of ``impl`` (see module docstring)."""
    agent, batch, gen = make_problem(batch_size, device)
    estimator = get_estimator("gumbel-st")
    if learner_mod is not None:
        learner = learner_mod.Learner(agent, estimator=estimator, actor_lr=LR, critic_lr=LR, alpha_lr=LR,
                                      autotune_alpha=True, gamma=GAMMA, target_update_rate=RATE)
        if impl == "compile":
            tau = torch.tensor(TAU, device=device)
            original = learner_mod.compute_losses

            def step() -> object:
                learner_mod.compute_losses = compiled_loss  # Learner.step looks it up at call time
                try:
                    with mlp_op.disabled():
                        return learner.step(batch, temperature=tau, generator=None)
                finally:
                    learner_mod.compute_losses = original
            return step
        if impl == "fused":
            raise RuntimeError("the fused update does not run with the Learner API")
        step = lambda: learner.step(batch, temperature=TAU, generator=gen)
        return _plain(step) if impl == "autograd" else step
    optimizer, flat_grad = losses.make_optimizer(agent, actor_lr=LR, critic_lr=LR, alpha_lr=LR, autotune_alpha=True)  # type: ignore[attr-defined]
    options = dict(gamma=GAMMA, tau=TAU, target_update_rate=RATE, autotune_alpha=True, generator=gen)
    if impl == "fused":
        fused = FusedUpdate(agent, optimizer, flat_grad)
        return lambda: fused(batch, **options)
    if impl == "compile":
        tau_t = torch.tensor(TAU, device=device)

        def step_old() -> object:
            with mlp_op.disabled():
                flat_grad.zero_()
                total = compiled_loss(agent, batch, estimator, gamma=GAMMA, tau=tau_t, autotune_alpha=True, generator=None)[0]
                total.backward()
                return losses.apply_gradient(agent, optimizer, flat_grad, total, RATE, None)  # type: ignore[attr-defined]
        return step_old
    step = lambda: losses.update(agent, optimizer, flat_grad, batch, estimator, **options)  # type: ignore[attr-defined]
    return _plain(step) if impl == "autograd" else step


def loss_function() -> Callable[..., Any]:
    """The loss computation to compile: ``compute_losses`` (or its pieces in the older API)."""
    if hasattr(losses, "compute_losses"):
        return losses.compute_losses

    def compute(agent: Agent, batch: Batch, estimator: Any, *, gamma: float, tau: torch.Tensor,
                autotune_alpha: bool, generator: torch.Generator | None) -> tuple[torch.Tensor, None]:
        alpha = agent.alpha.detach()
        n = batch.obs_BD.shape[0]
        both = agent.actor(torch.cat([batch.obs_BD, batch.next_obs_BD], dim=0))
        target = losses.critic_target(agent, both[n:].detach(), batch, gamma, alpha)
        c_loss, _ = losses.critic_loss(agent, batch, target)
        a_loss, entropy = losses.actor_loss(agent, batch.obs_BD, both[:n], estimator, tau=tau, alpha=alpha,
                                            generator=generator)
        return c_loss + a_loss + losses.alpha_loss(agent, entropy), None
    return compute


def time_compile(batch_size: int, device: torch.device, sync: Callable[[], None]) -> tuple[Callable[[], object], float, float] | str:
    """(step, cold seconds, warm seconds) of the compiled-loss update, or why it failed."""
    cache = tempfile.mkdtemp(prefix="inductor_cache_")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    try:
        import torch._dynamo

        seconds = []
        step: Callable[[], object] | None = None
        for _ in range(2):  # cold (empty cache), then warm (same cache, fresh dynamo state)
            torch._dynamo.reset()
            compiled = torch.compile(loss_function(), dynamic=False)
            step = make_step("compile", batch_size, device, compiled)
            tic = time.perf_counter()
            step()
            sync()
            seconds.append(time.perf_counter() - tic)
        assert step is not None
        return step, seconds[0], seconds[1]
    except Exception as exc:  # noqa: BLE001 -- report and go on without (d)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=7, help="timed blocks per implementation")
    parser.add_argument("--steps", type=int, default=300, help="updates per block")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the loss")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {name}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.threads} thread(s); median of {args.blocks} blocks of {args.steps} updates, interleaved")
    impls = ["autograd", "op"]
    fused_ok = FusedUpdate is not None and learner_mod is None
    if fused_ok:
        impls.append("fused")
    else:
        print("(fused: gumbel_ac.fused not available with this package version -- skipped)")
    rows = []
    for batch_size in args.batch_sizes:
        steps = {impl: make_step(impl, batch_size, device) for impl in impls}
        if args.compile:
            result = time_compile(batch_size, device, sync)
            if isinstance(result, str):
                print(f"(compile at batch {batch_size} failed, skipped: {result})")
            else:
                steps["compile"] = result[0]
                print(f"compile at batch {batch_size}: cold {result[1]:.1f} s, warm (cache hit) {result[2]:.1f} s")
        times: dict[str, list[float]] = {impl: [] for impl in steps}
        for step in steps.values():  # warm-up
            for _ in range(50):
                step()
        sync()
        for _ in range(args.blocks):
            for impl, step in steps.items():
                tic = time.perf_counter()
                for _ in range(args.steps):
                    step()
                sync()
                times[impl].append((time.perf_counter() - tic) / args.steps * 1e6)
        rows.append((batch_size, {impl: statistics.median(t) for impl, t in times.items()}))
    names = list(dict.fromkeys(n for _, med in rows for n in med))
    print("\n| batch | " + " | ".join(f"{n} us/update" for n in names) + " | "
          + " | ".join(f"autograd / {n}" for n in names[1:]) + " |")
    print("|---:" * (1 + 2 * len(names) - 1) + "|")
    for batch_size, med in rows:
        a = med["autograd"]
        print(f"| {batch_size} | " + " | ".join(f"{med[n]:.0f}" if n in med else "-" for n in names) + " | "
              + " | ".join(f"{a / med[n]:.2f}x" if n in med else "-" for n in names[1:]) + " |")


if __name__ == "__main__":
    main()
