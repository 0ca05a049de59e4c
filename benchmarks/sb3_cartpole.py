"""GumbelAC through Stable-Baselines3 vs SB3's own DQN (RL-Zoo settings) on CartPole-v1.

    python benchmarks/sb3_cartpole.py                 # 3 seeds, both algorithms, one run
    python benchmarks/sb3_cartpole.py --seeds 0 --budget 20000

For each algorithm and seed: train for ``--budget`` env steps; every ``--eval-every`` env
steps evaluate the deterministic policy on ``--eval-episodes`` episodes (10 Gymnasium
CartPole-v1 envs side by side, one episode each). Reported: env steps and training wall time
to the first eval with mean >= 475 (evaluation time is excluded from the clock), and a final
deterministic eval over ``--final-episodes`` episodes. One process, ``torch.set_num_threads(1)``.

Settings:
* GumbelAC: the native trainer's defaults (gumbel_ac.config.Config) through SB3: 16 envs
  (``make_vec_env``), one gradient step per vector step, batch 128, learning_starts 1000.
* DQN: RL-Zoo's tuned CartPole-v1 entry (DLR-RM/rl-baselines3-zoo, hyperparams/dqn.yml):
  lr 2.3e-3, batch 64, buffer 100k, learning_starts 1000, gamma 0.99,
  target_update_interval 10, train_freq 256, gradient_steps 128, exploration_fraction 0.16,
  exploration_final_eps 0.04, net_arch [256, 256], n_timesteps 5e4, one env.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from sb3_common import TimedEval, make_dqn_zoo
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from gumbel_ac.sb3 import GumbelAC

THRESHOLD = 475.0


@dataclass
class RunResult:
    algo: str
    seed: int
    steps_to_threshold: int | None = None
    seconds_to_threshold: float | None = None
    final_mean: float = float("nan")
    final_std: float = float("nan")
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    evals: list[tuple[int, float, float]] = field(default_factory=list)  # (steps, train s, mean)


def make_gumbel_ac(seed: int) -> BaseAlgorithm:
    env = make_vec_env("CartPole-v1", n_envs=16, seed=seed)
    # Every other hyperparameter is GumbelAC's default = the native Config default.
    return GumbelAC("MlpPolicy", env, train_freq=1, gradient_steps=1, batch_size=128, learning_starts=1_000, seed=seed)


ALGOS: dict[str, Callable[[int], BaseAlgorithm]] = {"GumbelAC (SB3)": make_gumbel_ac, "DQN (RL-Zoo)": make_dqn_zoo}


def run_one(name: str, seed: int, args: argparse.Namespace) -> RunResult:
    result = RunResult(algo=name, seed=seed)
    model = ALGOS[name](seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=args.eval_episodes, seed=10_000 + seed)
    callback = TimedEval(eval_env, args.eval_every, args.eval_episodes)
    model.learn(args.budget, callback=callback)
    result.train_seconds = callback.train_seconds()
    result.eval_seconds = callback.eval_seconds
    result.evals = [(steps, round(train_s, 2), mean) for steps, mean, _, train_s in callback.evals]
    hit = next(((steps, train_s) for steps, mean, _, train_s in callback.evals if mean >= THRESHOLD), None)
    if hit is not None:
        result.steps_to_threshold, result.seconds_to_threshold = hit
    final_env = make_vec_env("CartPole-v1", n_envs=args.final_episodes, seed=20_000 + seed)
    mean, std = evaluate_policy(model, final_env, n_eval_episodes=args.final_episodes, deterministic=True)
    result.final_mean, result.final_std = float(mean), float(std)
    for env in (model.get_env(), eval_env, final_env):
        if env is not None:
            env.close()
    return result


def fmt(value: Any, spec: str = "") -> str:
    return "—" if value is None else format(value, spec)


def table(results: list[RunResult], budget: int) -> str:
    lines = [
        "| algorithm | seed | env steps to eval ≥ 475 | train wall s to eval ≥ 475 | final eval (20 ep) "
        "| train wall s (whole budget) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.algo} | {r.seed} | {fmt(r.steps_to_threshold, ',')} | {fmt(r.seconds_to_threshold, '.1f')} | "
            f"{r.final_mean:.1f} ± {r.final_std:.1f} | {r.train_seconds:.1f} |"
        )
    for algo in dict.fromkeys(r.algo for r in results):
        rs = [r for r in results if r.algo == algo]
        hit = [r for r in rs if r.steps_to_threshold is not None]
        steps = fmt(statistics.median([r.steps_to_threshold for r in hit]), ",.0f") if hit else "—"
        secs = fmt(statistics.median([r.seconds_to_threshold for r in hit]), ".1f") if hit else "—"
        finals = statistics.mean(r.final_mean for r in rs)
        lines.append(
            f"| **{algo}** | median ({len(hit)}/{len(rs)} reached) | {steps} | {secs} | mean {finals:.1f} | "
            f"{statistics.median(r.train_seconds for r in rs):.1f} |"
        )
    lines.append(f"\nBudget {budget:,} env steps per run; runs that never reached 475 show —.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=50_000, help="env steps per run (RL-Zoo DQN: 5e4)")
    parser.add_argument("--eval-every", type=int, default=2_000, help="env steps between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--final-episodes", type=int, default=20)
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=list(ALGOS))
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(1)
    import stable_baselines3

    print(
        f"# CartPole-v1 via SB3 {stable_baselines3.__version__}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads 1",
        flush=True,
    )
    results = []
    for seed in args.seeds:
        for name in args.algos:
            r = run_one(name, seed, args)
            results.append(r)
            print(
                f"{name} seed {seed}: first >= {THRESHOLD:.0f} at {fmt(r.steps_to_threshold)} steps / "
                f"{fmt(r.seconds_to_threshold, '.1f')} s; final {r.final_mean:.1f} ± {r.final_std:.1f}; "
                f"train {r.train_seconds:.1f} s, eval {r.eval_seconds:.1f} s",
                flush=True,
            )
    print()
    print(table(results, args.budget))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([asdict(r) for r in results], fh, indent=1)


if __name__ == "__main__":
    main()
