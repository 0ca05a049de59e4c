"""Env steps per second: our batched torch CartPole against Gymnasium's vector envs.

Measures, in one run and interleaved (every repeat times every configuration once, so drift
in machine load hits all of them alike), the median steps/s of
  * ours: ``gumbel_ac/CartPole-v1`` with ``compile=True`` (fused step, in-graph reset noise)
    and, for reference, eager, at N in {256, 4096, 65536};
  * Gymnasium's numpy ``CartPoleVectorEnv`` (``make_vec(..., vectorization_mode=
    "vector_entry_point")``) at the same N;
  * Gymnasium's ``SyncVectorEnv`` at N=64.
Actions are random and pre-generated (on the env's device) so that only stepping is timed;
ours runs with ``validate_actions=False`` (the trainer's fast path). Steps/s counts sub-env
steps: (vector steps x N) / seconds.

    python benchmarks/env_throughput.py            # full run (~2 min on 2 cores)
    python benchmarks/env_throughput.py --quick    # short run
    python benchmarks/env_throughput.py --device cuda --sizes 4096 65536 1048576

MinAtar rows (``--minatar``): ``gumbel_ac/MinAtar-<Game>-v1`` eager and compiled (``--no-compile``
skips the compilations: 30 s to several minutes each on 2 cores, Seaquest's the longest) against
the reference ``minatar`` package (1.0.15) stepped through Gymnasium's ``SyncVectorEnv``
(``MinAtar/<Game>-v1``) at the same N, random actions, sticky actions on (0.1) on both sides:

    python benchmarks/env_throughput.py --minatar --quick
    python benchmarks/env_throughput.py --minatar --games Breakout --sizes 256 4096 65536
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from gumbel_ac.envs.cartpole import CartPoleEnv


def _timer(step: Callable[[int], object], n_steps: int, sync: Callable[[], None]) -> float:
    """Seconds for ``n_steps`` calls of ``step(i)``."""
    sync()
    t0 = time.perf_counter()
    for i in range(n_steps):
        step(i)
    sync()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 repeats, N in {256, 4096}, shorter timings")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="our N values")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--seconds", type=float, default=None, help="target seconds per timing")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1 measured faster here)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="our state dtype")
    p.add_argument("--no-eager", action="store_true", help="skip the eager reference rows")
    p.add_argument("--minatar", action="store_true", help="MinAtar rows instead of CartPole")
    p.add_argument("--games", nargs="+", default=["Breakout", "Freeway", "Asterix", "SpaceInvaders", "Seaquest"])
    p.add_argument("--no-compile", action="store_true", help="MinAtar: eager rows only")
    p.add_argument("--ref-max-n", type=int, default=4096, help="MinAtar: largest N for the reference")
    args = p.parse_args()
    if args.minatar:
        minatar_main(args)
        return
    sizes = args.sizes or ([256, 4096] if args.quick else [256, 4096, 65536])
    repeats = args.repeats or (3 if args.quick else 7)
    seconds = args.seconds or (0.15 if args.quick else 0.3)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    on_cpu = device.type == "cpu"

    # name -> (N, step(i), steps per timing)
    configs: dict[str, tuple[int, Callable[[int], object], int]] = {}
    rng = np.random.default_rng(0)

    def add(name: str, n: int, step: Callable[[int], object], per_step_s: float) -> None:
        configs[name] = (n, step, max(10, int(seconds / per_step_s)))

    def calibrate(step: Callable[[int], object]) -> float:
        step(0)
        step(1)  # warm-up (compilation happens here)
        return max(_timer(step, 10, sync) / 10, 1e-7)

    for n in sizes:
        for compiled in [True] if args.no_eager else [True, False]:
            env = CartPoleEnv(num_envs=n, device=device, validate_actions=False, compile=compiled, seed=0, dtype=dtype)
            env.reset()
            acts = torch.randint(0, 2, (64, n), device=device)
            step = (lambda e, a: lambda i: e.step(a[i % 64]))(env, acts)
            t0 = time.perf_counter()
            add(f"ours {'compiled' if compiled else 'eager'} N={n}", n, step, calibrate(step))
            if compiled:
                print(f"[compile+warm-up N={n}: {time.perf_counter() - t0:.1f}s]", flush=True)
        if on_cpu:
            genv = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
            genv.reset(seed=0)
            gacts = rng.integers(0, 2, size=(64, n))
            gstep = (lambda e, a: lambda i: e.step(a[i % 64]))(genv, gacts)
            add(f"gymnasium CartPoleVectorEnv N={n}", n, gstep, calibrate(gstep))
    senv = gym.make_vec("CartPole-v1", num_envs=64, vectorization_mode="sync")
    senv.reset(seed=0)
    sacts = rng.integers(0, 2, size=(64, 64))

    def sstep(i: int) -> object:
        return senv.step(sacts[i % 64])

    add("gymnasium SyncVectorEnv N=64", 64, sstep, calibrate(sstep))

    rates: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(repeats):
        for name, (n, step, k) in configs.items():
            rates[name].append(k * n / _timer(step, k, sync))
    med = {k: statistics.median(v) for k, v in rates.items()}
    sync_rate = med["gymnasium SyncVectorEnv N=64"]

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"\ndevice={dev_name}, torch threads={args.threads}, torch {torch.__version__}, "
        f"gymnasium {gym.__version__}, state dtype={args.dtype}, median of {repeats} interleaved repeats\n"
    )
    print("| env | N | steps/s | vs numpy CartPoleVectorEnv (same N) | vs SyncVectorEnv (N=64) |")
    print("|---|---:|---:|---:|---:|")
    for name in configs:
        n = configs[name][0]
        ref = med.get(f"gymnasium CartPoleVectorEnv N={n}")
        vs_np = f"{med[name] / ref:.2f}x" if ref else "-"
        print(f"| {name.rsplit(' N=', 1)[0]} | {n} | {med[name] / 1e6:.2f}M | {vs_np} | {med[name] / sync_rate:.0f}x |")


def minatar_main(args: argparse.Namespace) -> None:
    """Random-action steps/s of our MinAtar games and of the reference through SyncVectorEnv."""
    from gumbel_ac.envs import make

    sizes = args.sizes or [256, 4096]
    repeats = args.repeats or (3 if args.quick else 5)
    seconds = args.seconds or (0.3 if args.quick else 0.6)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    try:
        import minatar.gym

        minatar.gym.register_envs()
        have_ref = True
    except ImportError:
        have_ref = False
        print("[minatar not installed: no reference rows; pip install minatar==1.0.15]")
    configs: dict[str, tuple[str, int, Callable[[int], object], int]] = {}
    rng = np.random.default_rng(0)

    def add(game: str, name: str, n: int, step: Callable[[int], object]) -> None:
        step(0)
        step(1)  # warm-up (compilation happens here)
        per_step = max(_timer(step, 3, sync) / 3, 1e-7)
        configs[f"{game} {name} N={n}"] = (game, n, step, max(3, int(seconds / per_step)))

    for game in args.games:
        for n in sizes:
            for compiled in [False] if args.no_compile else [False, True]:
                env = make(f"MinAtar-{game}-v1", n, device=device, validate_actions=False, compile=compiled, seed=0)
                env.reset()
                acts = torch.randint(0, int(env.single_action_space.n), (64, n), device=device)
                t0 = time.perf_counter()
                add(
                    game,
                    f"ours {'compiled' if compiled else 'eager'}",
                    n,
                    (lambda e, a: lambda i: e.step(a[i % 64]))(env, acts),
                )
                if compiled:
                    print(f"[{game} compile+warm-up N={n}: {time.perf_counter() - t0:.1f}s]", flush=True)
            if have_ref and n <= args.ref_max_n:
                ref = gym.make_vec(f"MinAtar/{game}-v1", num_envs=n, vectorization_mode="sync")
                ref.reset(seed=0)
                racts = rng.integers(0, int(ref.single_action_space.n), size=(64, n))
                add(game, "minatar SyncVectorEnv", n, (lambda e, a: lambda i: e.step(a[i % 64]))(ref, racts))

    rates: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(repeats):
        for name, (_, n, step, k) in configs.items():
            rates[name].append(k * n / _timer(step, k, sync))
    med = {k: statistics.median(v) for k, v in rates.items()}
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"\ndevice={dev_name}, cpu capability={torch.backends.cpu.get_cpu_capability()}, torch threads={args.threads}, "
        f"torch {torch.__version__}, gymnasium {gym.__version__}, median of {repeats} interleaved repeats\n"
    )
    print("| game | env | N | steps/s | vs minatar SyncVectorEnv (same N) |")
    print("|---|---|---:|---:|---:|")
    for name, (game, n, _, _) in configs.items():
        ref_rate = med.get(f"{game} minatar SyncVectorEnv N={n}")
        vs = f"{med[name] / ref_rate:.1f}x" if ref_rate else "-"
        label = name[len(game) + 1 :].rsplit(" N=", 1)[0]
        print(f"| {game} | {label} | {n} | {med[name] / 1e3:.1f}k | {vs} |")


if __name__ == "__main__":
    main()
