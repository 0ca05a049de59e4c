"""Training throughput with 1 vs 2 torch threads (the ``--num-threads`` default), interleaved.

    python benchmarks/threads.py

Runs the default agent on ``gumbel_ac/CartPole-v1`` (16 envs, updates from the start) for a
fixed number of env steps in fresh subprocesses (a thread count cannot be lowered reliably
inside one process), alternating 1, 2, 1, 2, ... and prints the median env steps/s of each.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

CODE = """
import sys, tempfile, time, torch
from gumbel_ac.config import Config
from gumbel_ac.trainer import train
with tempfile.TemporaryDirectory() as tmp:
    cfg = Config(env="gumbel_ac/CartPole-v1", num_threads=int(sys.argv[1]), total_steps=16000,
                 learning_starts=256, eval_every=0, final_eval_episodes=0, checkpoint_every=0,
                 log_every=16000, progress=False, runs_dir=tmp, run_name="t")
    r = train(cfg)
print(16000 / r.train_seconds)
"""


def main() -> None:
    results: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(3):
        for threads in (1, 2):
            out = subprocess.run([sys.executable, "-c", CODE, str(threads)], capture_output=True, text=True, check=True)
            results[threads].append(float(out.stdout.strip().splitlines()[-1]))
    print("| torch threads | env steps/s while learning (median of 3) |")
    print("|---|---|")
    for threads, values in results.items():
        print(f"| {threads} | {statistics.median(values):,.0f} |")
    print(f"ratio 1 thread / 2 threads: {statistics.median(results[1]) / statistics.median(results[2]):.2f}")


if __name__ == "__main__":
    main()
