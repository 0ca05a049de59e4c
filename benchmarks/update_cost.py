"""Cost of one gradient step: ``Learner.step`` (the default) vs ``torch.compile`` of its loss.

    python benchmarks/update_cost.py                       # batch 32, 64, 128 on the CPU
    python benchmarks/update_cost.py --compile             # also torch.compile of the loss
    python benchmarks/update_cost.py --device cuda --batch-sizes 128 4096

Implementations (the same gumbel-st step, same agent, same minibatch, same seeds):

- ``autograd``: :meth:`gumbel_ac.learner.Learner.step` -- the one update path, autograd
  through :func:`gumbel_ac.losses.compute_losses`;
- ``compile`` (``--compile``): the same step with ``compute_losses`` replaced by
  ``torch.compile(compute_losses)`` (backward, Adam and Polyak as usual). The first call's
  compile time is reported cold (empty Inductor cache folder) and warm (same cache, after
  ``torch._dynamo.reset()``). The compiled loss draws its Gumbel noise from torch's global RNG
  (``generator=None``: a ``torch.Generator`` argument does not trace) and takes the
  temperature as a 0-dim tensor.

Same agent shape as the defaults (width 64, twin critic, CartPole's 4 observations and 2
actions). The implementations alternate in blocks so machine load hits both alike; medians
over blocks; the ratio is ``autograd / compile`` (> 1: compile is faster). On CUDA each block
ends with a synchronize. Prints torch's CPU capability (AVX2/AVX512): compare numbers within
one run only.
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

from gumbel_ac import learner as learner_mod
from gumbel_ac.agent import make_agent
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.losses import Batch

GAMMA, TAU, RATE, LR = 0.995, 0.6, 0.2, 3e-3


def make_step(batch_size: int, device: torch.device, compiled_loss: Any = None) -> Callable[[], object]:
    """A zero-argument callable running one full update (compiled loss if given)."""
    torch.manual_seed(0)
    agent = make_agent(obs_dim=4, spec=ActionSpec([2]), hidden_sizes=(64, 64), alpha=0.5, target_entropy_ratio=0.1).to(
        device
    )
    gen = torch.Generator(device=device).manual_seed(1)
    batch = Batch(
        obs_BD=torch.randn(batch_size, 4, device=device, generator=gen),
        action_BH=torch.randint(0, 2, (batch_size, 1), device=device, generator=gen),
        reward_B=torch.ones(batch_size, device=device),
        next_obs_BD=torch.randn(batch_size, 4, device=device, generator=gen),
        terminated_B=torch.rand(batch_size, device=device, generator=gen) < 0.02,
    )
    learner = learner_mod.Learner(
        agent,
        estimator=learner_mod.make_estimator("gumbel-st"),
        actor_lr=LR,
        critic_lr=LR,
        alpha_lr=LR,
        autotune_alpha=True,
        gamma=GAMMA,
        target_update_rate=RATE,
    )
    if compiled_loss is None:
        return lambda: learner.step(batch, temperature=TAU, generator=gen)
    tau = torch.tensor(TAU, device=device)
    original = learner_mod.compute_losses

    def step() -> object:
        learner_mod.compute_losses = compiled_loss  # Learner.step looks it up at call time
        try:
            return learner.step(batch, temperature=tau, generator=None)
        finally:
            learner_mod.compute_losses = original

    return step


def time_compile(
    batch_size: int, device: torch.device, sync: Callable[[], None]
) -> tuple[Callable[[], object], float, float] | str:
    """(step, cold seconds, warm seconds) of the compiled-loss update, or why it failed."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor_cache_")
    try:
        import torch._dynamo

        seconds = []
        step: Callable[[], object] | None = None
        for _ in range(2):  # cold (empty cache), then warm (same cache, fresh dynamo state)
            torch._dynamo.reset()
            step = make_step(batch_size, device, torch.compile(learner_mod.compute_losses, dynamic=False))
            tic = time.perf_counter()
            step()
            sync()
            seconds.append(time.perf_counter() - tic)
        assert step is not None
        return step, seconds[0], seconds[1]
    except Exception as exc:  # noqa: BLE001 -- report and go on without it
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
    print(
        f"torch {torch.__version__}, {name}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{args.threads} thread(s); median of {args.blocks} blocks of {args.steps} updates, interleaved"
    )
    rows = []
    for batch_size in args.batch_sizes:
        steps = {"autograd": make_step(batch_size, device)}
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
    print(
        "\n| batch | "
        + " | ".join(f"{n} us/update" for n in names)
        + "".join(f" | autograd / {n}" for n in names[1:])
        + " |"
    )
    print("|---:" * (2 * len(names)) + "|")
    for batch_size, med in rows:
        a = med["autograd"]
        print(
            f"| {batch_size} | "
            + " | ".join(f"{med[n]:.0f}" if n in med else "-" for n in names)
            + "".join(f" | {a / med[n]:.2f}x" if n in med else " | -" for n in names[1:])
            + " |"
        )


if __name__ == "__main__":
    main()
