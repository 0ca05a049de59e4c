"""Cost of one gradient step: the autograd update vs the fused (hand-written backward) one.

    python benchmarks/update_cost.py                       # batch 32, 64, 128 on the CPU
    python benchmarks/update_cost.py --device cuda --batch-sizes 128 4096

Same agent shape as the defaults (width 64, twin critic, CartPole's 4 observations and 2
actions), same minibatch, same generator seeds; the two implementations alternate in blocks
(autograd, fused, autograd, ...) so machine load hits both alike. Prints the median
microseconds per update of each and the ratio. On CUDA each block ends with a synchronize.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from gumbel_ac.agent import make_agent
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.estimators import get_estimator
from gumbel_ac.fused import FusedUpdate
from gumbel_ac.losses import Batch, make_optimizer, update


def make_step(impl: str, batch_size: int, device: torch.device) -> Callable[[], object]:
    torch.manual_seed(0)
    agent = make_agent(obs_dim=4, spec=ActionSpec([2]), hidden_sizes=(64, 64), alpha=0.5,
                       target_entropy_ratio=0.1).to(device)
    optimizer, flat_grad = make_optimizer(agent, actor_lr=3e-3, critic_lr=3e-3, alpha_lr=3e-3, autotune_alpha=True)
    gen = torch.Generator(device=device).manual_seed(1)
    batch = Batch(
        obs_BD=torch.randn(batch_size, 4, device=device, generator=gen),
        action_BH=torch.randint(0, 2, (batch_size, 1), device=device, generator=gen),
        reward_B=torch.ones(batch_size, device=device),
        next_obs_BD=torch.randn(batch_size, 4, device=device, generator=gen),
        terminated_B=torch.rand(batch_size, device=device, generator=gen) < 0.02,
    )
    options = dict(gamma=0.995, tau=0.6, target_update_rate=0.2, autotune_alpha=True, generator=gen)
    if impl == "fused":
        fused = FusedUpdate(agent, optimizer, flat_grad)
        return lambda: fused(batch, **options)
    estimator = get_estimator("gumbel-st")
    return lambda: update(agent, optimizer, flat_grad, batch, estimator, **options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=7, help="timed blocks per implementation")
    parser.add_argument("--steps", type=int, default=300, help="updates per block")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {name}, {args.threads} thread(s); median of {args.blocks} blocks "
          f"of {args.steps} updates, interleaved")
    print("\n| batch | autograd us/update | fused us/update | autograd / fused |")
    print("|---:|---:|---:|---:|")
    for batch_size in args.batch_sizes:
        steps = {impl: make_step(impl, batch_size, device) for impl in ("autograd", "fused")}
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
        a, f = statistics.median(times["autograd"]), statistics.median(times["fused"])
        print(f"| {batch_size} | {a:.0f} | {f:.0f} | {a / f:.2f}x |")


if __name__ == "__main__":
    main()
