"""Wall-clock time to solve CartPole-v1: gumbel_ac vs SB3 PPO and DQN (RL-Zoo settings).

    python benchmarks/solve_time.py                 # 3 seeds, all three, interleaved
    python benchmarks/solve_time.py --only ours --seeds 0 1 2 3 4 5
    python benchmarks/solve_time.py --throughput    # steady-state env steps/s while learning

Every algorithm is evaluated the same way: every ``--eval-every`` env steps, 10 deterministic
episodes on Gymnasium's own ``CartPole-v1``; evaluation time is excluded from the wall
clock. Reported per run: env steps and training seconds to the first eval mean >= 475, to
the first of three consecutive evals >= 475, and the final eval. Runs are interleaved over
seeds (ours, PPO, DQN, next seed, ...) so machine load hits all alike. Process start-up
(imports) is measured separately, in fresh subprocesses.

RL-Zoo hyperparameters (rl-baselines3-zoo, hyperparams/ppo.yml and dqn.yml, CartPole-v1):
PPO: 8 envs, n_steps 32, batch 256, gae_lambda 0.8, gamma 0.98, 20 epochs, ent_coef 0,
lr linear 1e-3, clip linear 0.2, 1e5 steps. DQN: 1 env, lr 2.3e-3, batch 64, buffer 1e5,
learning_starts 1000, gamma 0.99, target_update_interval 10, train_freq 256,
gradient_steps 128, exploration_fraction 0.16, final eps 0.04, net [256, 256], 5e4 steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("WANDB_MODE", "disabled")

import torch

THRESHOLD = 475.0
EVAL_ENV = "CartPole-v1"


@dataclass
class RunResult:
    algo: str
    seed: int
    evals: list[tuple[int, float, float, float]] = field(default_factory=list)  # step, mean, std, seconds

    def first_hit(self, consecutive: int = 1) -> tuple[int, float] | None:
        for i in range(len(self.evals) - consecutive + 1):
            if all(self.evals[i + k][1] >= THRESHOLD for k in range(consecutive)):
                return self.evals[i][0], self.evals[i][3]
        return None

    @property
    def final(self) -> tuple[float, float]:
        return self.evals[-1][1], self.evals[-1][2]


def run_ours(seed: int, args: argparse.Namespace, **overrides: Any) -> RunResult:
    from gumbel_ac.config import Config
    from gumbel_ac.trainer import train

    env = args.ours_env
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config(
            env=env,
            eval_env=EVAL_ENV,
            seed=seed,
            total_steps=args.ours_steps,
            eval_every=args.eval_every,
            eval_episodes=10,
            final_eval_episodes=10,
            checkpoint_every=0,
            log_every=10 * args.eval_every,
            progress=False,
            runs_dir=tmp,
            run_name=f"ours{seed}",
            device=args.device,
            cuda_graphs=args.cuda_graphs,
            **overrides,
        )
        result = train(cfg)
    out = RunResult("gumbel_ac", seed)
    out.evals = [(e.step, e.mean, e.std, e.train_seconds) for e in result.evals]
    return out


def _timed_learn(model: Any, steps: int, args: argparse.Namespace, result: RunResult, seed: int) -> RunResult:
    from sb3_common import TimedEval
    from stable_baselines3.common.env_util import make_vec_env

    callback = TimedEval(make_vec_env(EVAL_ENV, n_envs=1, seed=seed + 1000), args.eval_every, 10, eval_at_end=True)
    model.learn(steps, callback=callback)
    result.evals = callback.evals
    return result


def run_ppo(seed: int, args: argparse.Namespace) -> RunResult:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    def linear(start: float) -> Any:
        return lambda progress: progress * start

    env = make_vec_env(EVAL_ENV, n_envs=8, seed=seed)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=linear(1e-3),
        clip_range=linear(0.2),
        seed=seed,
        device="cpu",
    )
    return _timed_learn(model, int(1e5), args, RunResult("sb3-ppo", seed), seed)


def run_dqn(seed: int, args: argparse.Namespace) -> RunResult:
    from sb3_common import make_dqn_zoo

    return _timed_learn(make_dqn_zoo(seed), int(5e4), args, RunResult("sb3-dqn", seed), seed)


def import_seconds(statement: str, repeats: int = 3) -> float:
    """Median wall time of a fresh interpreter running ``statement`` (process start-up)."""
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True, capture_output=True)
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def _fmt_hit(hit: tuple[int, float] | None) -> str:
    return "never" if hit is None else f"{hit[0]:>6d} steps {hit[1]:6.2f} s"


def report(results: list[RunResult]) -> None:
    order = {"sb3-ppo": 1, "sb3-dqn": 2}
    algos = sorted({r.algo for r in results}, key=lambda a: (order.get(a, 0), a))
    print("\n| algorithm | seed | first eval >= 475 | first of 3 consecutive >= 475 | final eval |")
    print("|---|---|---|---|---|")
    for r in results:
        mean, std = r.final
        print(
            f"| {r.algo} | {r.seed} | {_fmt_hit(r.first_hit())} | {_fmt_hit(r.first_hit(3))} | {mean:.1f} ± {std:.1f} |"
        )
    medians: dict[str, tuple[float, float]] = {}
    print("\n| algorithm | median steps to 475 | median seconds to 475 | median seconds to 3x475 | solved runs |")
    print("|---|---|---|---|---|")
    for algo in algos:
        runs = [r for r in results if r.algo == algo]
        hits = [r.first_hit() for r in runs]
        hits3 = [r.first_hit(3) for r in runs]
        # An unsolved run counts as infinitely slow (the median then says so honestly).
        steps = statistics.median([h[0] if h else float("inf") for h in hits])
        secs = statistics.median([h[1] if h else float("inf") for h in hits])
        secs3 = statistics.median([h[1] if h else float("inf") for h in hits3])
        medians[algo] = (secs, secs3)
        solved = sum(1 for r in runs if r.final[0] >= THRESHOLD)
        print(f"| {algo} | {steps:.0f} | {secs:.2f} | {secs3:.2f} | {solved}/{len(runs)} end >= 475 |")
    if "gumbel_ac" in medians:
        for peer in ("sb3-ppo", "sb3-dqn"):
            if peer in medians:
                a, b = medians["gumbel_ac"], medians[peer]
                print(f"ratio gumbel_ac / {peer}: first hit {a[0] / b[0]:.2f}, three in a row {a[1] / b[1]:.2f}")


def throughput(args: argparse.Namespace) -> None:
    """Steady-state env steps/s while learning, ours at each ``--throughput-envs`` vs SB3 PPO/DQN.

    Each size trains ``--throughput-iters`` iterations after a short untimed run of the same
    size (first calls pay one-time costs: CUDA context, cuBLAS handles, allocator growth); the
    median of 3 timed runs is reported. Updates start at the third iteration (``learning_starts``
    = 2 vector steps), so 1% of the timed iterations only collect."""
    from gumbel_ac.config import Config
    from gumbel_ac.trainer import train

    rows = []
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"

    def run(num_envs: int, iterations: int) -> float:
        steps = num_envs * iterations
        with tempfile.TemporaryDirectory() as tmp:
            # batch_size / buffer_size 0 = the Config's auto rule (they scale with num_envs).
            cfg = Config(
                env=args.ours_env,
                num_envs=num_envs,
                total_steps=steps,
                learning_starts=num_envs * 2,
                batch_size=0,
                buffer_size=0,
                device=args.device,
                cuda_graphs=args.cuda_graphs,
                eval_every=0,
                final_eval_episodes=0,
                checkpoint_every=0,
                log_every=steps,
                progress=False,
                runs_dir=tmp,
                run_name="tp",
            )
            return steps / train(cfg).train_seconds

    for num_envs in args.throughput_envs:
        run(num_envs, 10)  # warm-up, untimed
        sps = statistics.median(run(num_envs, args.throughput_iters) for _ in range(3))
        graphs = ", CUDA graphs" if args.cuda_graphs else ""
        rows.append((f"gumbel_ac {args.ours_env} N={num_envs} ({device_name}{graphs})", sps))
    if "ppo" in args.only:
        rows.append(("SB3 PPO (RL-Zoo, 8 envs, CPU)", _ppo_throughput()))
    if "dqn" in args.only:
        rows.append(("SB3 DQN (RL-Zoo, 1 env, CPU)", _dqn_throughput()))
    print("\n| trainer | env steps/s while learning |")
    print("|---|---|")
    for name, sps in rows:
        print(f"| {name} | {sps:,.0f} |")


def _ppo_throughput() -> float:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env(EVAL_ENV, n_envs=8, seed=0)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, device="cpu")
    tic = time.perf_counter()
    model.learn(20_000)
    # SB3's own advice: PPO with an MLP policy runs best on the CPU, so the peers stay there.
    return 20_000 / (time.perf_counter() - tic)


def _dqn_throughput() -> float:
    from sb3_common import make_dqn_zoo

    model = make_dqn_zoo(0)
    tic = time.perf_counter()
    model.learn(10_000)
    return 10_000 / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", choices=["ours", "ppo", "dqn"], nargs="+", default=["ours", "ppo", "dqn"])
    parser.add_argument("--ours-env", default="gumbel_ac/CartPole-v1", help="training env of ours")
    parser.add_argument("--ours-steps", type=int, default=40_000)
    parser.add_argument(
        "--estimators",
        nargs="+",
        default=["gumbel-st"],
        help="run ours once per estimator (e.g. gumbel-st score exact)",
    )
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every algorithm")
    parser.add_argument("--throughput", action="store_true", help="measure steady-state steps/s instead")
    parser.add_argument("--throughput-envs", type=int, nargs="+", default=[16, 4096])
    parser.add_argument("--throughput-iters", type=int, default=200, help="timed iterations per size (median of 3)")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="device of ours (SB3 stays on the CPU)"
    )
    parser.add_argument("--cuda-graphs", action="store_true", help="ours with --cuda-graphs (CUDA only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} cores; ours trains on {args.ours_env}"
    )
    if args.throughput:
        throughput(args)
        return
    print("start-up (median of 3 fresh interpreters):")
    print(f"  import gumbel_ac.trainer: {import_seconds('import gumbel_ac.trainer, gumbel_ac.envs'):.2f} s")
    print(f"  import stable_baselines3: {import_seconds('import stable_baselines3'):.2f} s")
    runners = {"ppo": run_ppo, "dqn": run_dqn}
    results: list[RunResult] = []
    for seed in args.seeds:
        jobs: list[tuple[str, Any]] = []
        for name in args.only:
            if name == "ours":
                for est in args.estimators:
                    label = "gumbel_ac" if args.estimators == ["gumbel-st"] else f"gumbel_ac/{est}"
                    jobs.append((label, lambda s, a, e=est: run_ours(s, a, estimator=e)))
            else:
                jobs.append((name, runners[name]))
        for label, runner in jobs:
            tic = time.perf_counter()
            res = runner(seed, args)
            if label.startswith("gumbel_ac"):
                res.algo = label
            results.append(res)
            hit = res.first_hit()
            print(
                f"  {res.algo:>9} seed {seed}: first >= 475 {_fmt_hit(hit)}, final {res.final[0]:.1f} "
                f"({time.perf_counter() - tic:.1f} s with evals)",
                flush=True,
            )
    report(results)


if __name__ == "__main__":
    main()
