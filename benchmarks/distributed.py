"""Data-parallel throughput: env steps/s and updates/s for P = 1 and P = 2 ranks, one run.

    python benchmarks/distributed.py                 # CPU, gloo, P = 1 and 2 (about a minute)
    python benchmarks/distributed.py --device cuda   # NCCL, one GPU per rank (needs P GPUs)

Each P launches ``torchrun --standalone --nproc_per_node=P train.py`` on the batched torch
CartPole with the same per-rank settings (16 envs, batch 128, one update per vector step,
one torch thread per rank), so P = 2 steps twice the envs and trains on a global batch of
2 x 128 per update. Throughput is read from rank 0's metrics file after the first logged
window (start-up, warm-up and the random-action phase excluded): env steps/s summed over
ranks, updates/s (synchronized gradient steps), and samples/s = updates/s x P x batch.

It also times the per-iteration stop-flag agreement (one 1-element gloo all-reduce) that the
trainer does under torchrun, to show it is cheap next to an iteration.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(nproc: int, args: list[str]) -> None:
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=localhost:{_port()}",
        "--nnodes=1",
        *args,
    ]
    subprocess.run(cmd, env=env, check=True, cwd=str(ROOT))


def _measure(nproc: int, steps: int, device: str, batch: int, tmp: Path) -> dict[str, float]:
    from gumbel_ac.logger import read_metrics

    name = f"p{nproc}"
    _torchrun(
        nproc,
        [
            str(ROOT / "train.py"),
            "--env",
            "gumbel_ac/CartPole-v1",
            "--device",
            device,
            "--num-envs",
            "16",
            "--batch-size",
            str(batch),
            "--learning-starts",
            "1000",
            "--total-steps",
            str(steps * nproc),
            "--log-every",
            str(2000 * nproc),
            "--eval-every",
            "0",
            "--final-eval-episodes",
            "0",
            "--checkpoint-every",
            "0",
            "--no-progress",
            "--num-threads",
            "1",
            "--runs-dir",
            str(tmp),
            "--run-name",
            name,
        ],
    )
    rows = [r for r in read_metrics(tmp / name / "metrics.jsonl") if "charts/updates" in r]
    prev, seconds, env_steps, updates = rows[0]["global_step"], 0.0, 0, 0.0
    for row in rows[1:]:
        delta = row["global_step"] - prev
        seconds += delta / row["charts/sps"]
        env_steps += delta
        updates += row["charts/updates"]
        prev = row["global_step"]
    return {"env_sps": env_steps / seconds, "ups": updates / seconds, "samples": updates / seconds * nproc * batch}


def _agree_worker() -> None:
    """Under torchrun: time DistContext.agree (the per-iteration stop-flag all-reduce)."""
    import torch
    import torch.distributed as dist

    from gumbel_ac.distributed import DistContext

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    ctx = DistContext(device=torch.device("cpu"), rank=dist.get_rank(), world_size=dist.get_world_size())
    for _ in range(200):
        ctx.agree(False, 0)
    n = 3000
    tic = time.perf_counter()
    for _ in range(n):
        ctx.agree(False, 0)
    per_call = (time.perf_counter() - tic) / n
    if ctx.is_main:
        print(f"AGREE_US {per_call * 1e6:.1f}", flush=True)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16_000, help="env steps per rank")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--agree-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agree_worker:
        _agree_worker()
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in (1, 2):
            results[nproc] = _measure(nproc, args.steps, args.device, args.batch_size, Path(tmp))
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node=2",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint=localhost:{_port()}",
                "--nnodes=1",
                __file__,
                "--agree-worker",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    agree_us = next(float(line.split()[1]) for line in out.splitlines() if line.startswith("AGREE_US"))
    print(
        f"\nbatched torch CartPole, 16 envs/rank, batch {args.batch_size}/rank, 1 update per vector step, "
        f"{args.steps} env steps/rank, device {args.device}, 1 torch thread/rank, {os.cpu_count()} CPUs\n"
    )
    print("| P | env steps/s (all ranks) | updates/s | samples/s (updates x P x batch) | env steps/s vs P=1 |")
    print("|---|---|---|---|---|")
    for nproc, r in results.items():
        print(
            f"| {nproc} | {r['env_sps']:,.0f} | {r['ups']:,.0f} | {r['samples']:,.0f} | "
            f"{r['env_sps'] / results[1]['env_sps']:.2f}x |"
        )
    from gumbel_ac.distributed import STOP_SYNC_EVERY

    print(
        f"\nstop-flag agreement (1-element gloo all-reduce, P=2): {agree_us:.0f} us per call; the trainer "
        f"calls it every {STOP_SYNC_EVERY} iterations: {agree_us / STOP_SYNC_EVERY:.0f} us per iteration"
    )


if __name__ == "__main__":
    main()
