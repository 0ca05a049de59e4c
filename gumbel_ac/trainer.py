"""The training loop: read it top to bottom.

``train(config)`` builds everything from the config and runs iterations of three named
phases (PureJaxRL style):

1. **rollout** -- the agent acts on every env at once, the envs step, transitions go to the
   replay buffer;
2. **update** -- ``updates_per_step`` gradient steps on replay minibatches
   (:func:`gumbel_ac.losses.update`);
3. **bookkeeping** -- every ``log_every`` env steps the accumulated metrics are read from the
   device in ONE transfer and logged; periodic evaluation and checkpoints.

With the batched torch envs of ``gumbel_ac.envs`` phases 1-2 never synchronize with the
host: no ``.item()``, no numpy, no Python branch on a tensor value (tests/test_fast_path.py
counts). Gymnasium's numpy envs necessarily copy actions and observations each step.
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gumbel_ac.agent import Agent, make_agent
from gumbel_ac.buffer import ReplayBuffer
from gumbel_ac.checkpoint import save_checkpoint, write_json_atomic
from gumbel_ac.config import Config, ConfigError
from gumbel_ac.estimators import EstimatorFn, get_estimator
from gumbel_ac.evaluation import evaluate
from gumbel_ac.logger import MetricsLogger
from gumbel_ac.losses import UpdateStats, make_optimizer, update
from gumbel_ac.vector import describe_spaces, make_env, resolve_device


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. repeated non-finite losses); the message says why."""


@dataclass
class EvalRecord:
    """One periodic evaluation."""

    step: int
    mean: float
    std: float
    train_seconds: float


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    run_dir: Path
    final_mean: float
    final_std: float
    evals: list[EvalRecord] = field(default_factory=list)
    train_seconds: float = 0.0
    interrupted: bool = False


def build_estimator(config: Config) -> EstimatorFn:
    """The config's estimator, with its options (e.g. ``rao_samples`` for gumbel-rao)."""
    if config.estimator == "gumbel-rao":
        return get_estimator(config.estimator, rao_samples=config.rao_samples)  # type: ignore[call-arg]
    return get_estimator(config.estimator)


def default_run_name(config: Config) -> str:
    env = config.env.replace("/", "_")
    return f"{env}__{config.estimator}__{config.seed}__{int(time.time())}"


def prepare_run_dir(config: Config) -> Path:
    """Create the run folder and prove it is writable before any training happens."""
    run_dir = Path(config.runs_dir) / (config.run_name or default_run_name(config))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-probe-{os.getpid()}"
        with open(probe, "wb") as fh:
            fh.write(b"\0" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"run folder {run_dir} is not writable ({exc.strerror or exc}); choose another --runs-dir"
        ) from None
    return run_dir


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop finishes its update, checkpoints and exits."""

    def __init__(self) -> None:
        self.stop = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.stop = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(config: Config) -> TrainResult:
    """Train an agent as ``config`` says; write the run folder; return the final evaluation."""
    config.validate()
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)

    # --- environments, agent, optimizer, replay ------------------------------------------
    env = make_env(config.env, num_envs=config.num_envs, device=device)
    eval_env_id = config.eval_env or config.env
    spec, obs_dim = env.spec, env.obs_dim
    spaces = describe_spaces(env.single_observation_space, env.single_action_space)
    agent = make_agent(
        obs_dim=obs_dim,
        spec=spec,
        hidden_sizes=config.hidden_sizes,
        alpha=config.alpha if config.alpha > 0 else 1e-8,
        target_entropy_ratio=config.target_entropy_ratio,
    ).to(device)
    if config.alpha == 0:
        agent.log_alpha.data.fill_(-math.inf)
    optimizer, flat_grad = make_optimizer(
        agent,
        actor_lr=config.actor_lr,
        critic_lr=config.critic_lr,
        alpha_lr=config.alpha_lr,
        autotune_alpha=config.autotune_alpha,
    )
    estimator = build_estimator(config)
    buffer = ReplayBuffer(config.buffer_size, obs_dim, spec.num_heads, device)
    act_gen = torch.Generator(device=device).manual_seed(config.seed)
    update_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    replay_gen = torch.Generator(device=device).manual_seed(config.seed + 2)

    run_dir = prepare_run_dir(config)
    write_json_atomic(run_dir / "config.json", config.to_dict())
    logger = MetricsLogger(
        run_dir,
        total_steps=config.total_steps,
        estimator=config.estimator,
        progress=config.progress,
        track=config.track,
        wandb_project=config.wandb_project,
        wandb_entity=config.wandb_entity,
        run_name=run_dir.name,
        config=config.to_dict(),
    )

    def checkpoint(step: int) -> Path | None:
        try:
            return save_checkpoint(
                run_dir, step=step, agent=agent, config=config, spaces=spaces, keep=config.keep_checkpoints
            )
        except OSError as exc:  # disk full etc.: report, keep the previous checkpoint, go on
            logger.message(f"warning: checkpoint at step {step} failed ({exc}); the previous one is kept")
            return None

    # Device-side accumulators, read once per log interval.
    num_stats = len(UpdateStats.NAMES)
    stats_sum = torch.zeros(num_stats, device=device)
    ep_sums = torch.zeros(3, device=device)  # count, return sum, length sum
    streak = torch.zeros((), device=device)
    max_streak = torch.zeros((), device=device)
    updates_in_window = 0

    iterations = math.ceil(config.total_steps / config.num_envs)
    global_step = 0
    next_log = config.log_every
    next_eval = config.eval_every if config.eval_every > 0 else math.inf
    next_ckpt = config.checkpoint_every if config.checkpoint_every > 0 else math.inf
    evals: list[EvalRecord] = []
    train_seconds = 0.0
    window_start, window_step = time.perf_counter(), 0
    interrupted = False

    obs = env.reset(seed=config.seed)
    try:
        with _StopFlag() as stop:
            tic = time.perf_counter()
            for _ in range(iterations):
                # 1. rollout ---------------------------------------------------------------
                global_step += config.num_envs
                if global_step <= config.learning_starts:
                    action = agent.random_actions(config.num_envs, act_gen, device)
                else:
                    action = agent.act(obs, generator=act_gen)
                step = env.step(action)
                buffer.add(obs, action, step.reward, step.next_obs, step.terminated, step.valid)
                obs = step.obs
                done = step.episode_done.to(ep_sums.dtype)
                ep_sums += torch.stack(
                    [done.sum(), (step.episode_return * done).sum(), (step.episode_length * done).sum()]
                )

                # 2. update ----------------------------------------------------------------
                if global_step > config.learning_starts and len(buffer) >= config.batch_size:
                    tau = config.temperature_at(global_step)
                    for _ in range(config.updates_per_step):
                        batch = buffer.sample(config.batch_size, generator=replay_gen)
                        stats = update(
                            agent,
                            optimizer,
                            flat_grad,
                            batch,
                            estimator,
                            gamma=config.gamma,
                            tau=tau,
                            target_update_rate=config.target_update_rate,
                            autotune_alpha=config.autotune_alpha,
                            generator=update_gen,
                        )
                        packed = stats.as_tensor()
                        stats_sum += packed
                        streak = (streak + packed[-1]) * packed[-1]
                        max_streak = torch.maximum(max_streak, streak)
                        updates_in_window += 1

                # 3. bookkeeping -----------------------------------------------------------
                last = global_step >= iterations * config.num_envs
                if global_step >= next_log or last or stop.stop:
                    next_log += config.log_every
                    host = torch.cat([stats_sum, ep_sums, max_streak.reshape(1)]).cpu().tolist()
                    now = time.perf_counter()
                    metrics: dict[str, float] = {
                        "charts/sps": (global_step - window_step) / max(now - window_start, 1e-9),
                        "charts/gumbel_temperature": config.temperature_at(global_step),
                        "charts/updates": float(updates_in_window),
                    }
                    if updates_in_window:
                        for name, value in zip(UpdateStats.NAMES, host[:num_stats]):
                            metrics[name] = value / updates_in_window
                    count = host[num_stats]
                    if count > 0:
                        metrics["charts/episodic_return"] = host[num_stats + 1] / count
                        metrics["charts/episodic_length"] = host[num_stats + 2] / count
                    logger.log(global_step, metrics)
                    if host[-1] >= config.max_nonfinite_updates:
                        raise TrainingError(
                            f"{int(host[-1])} consecutive updates had a non-finite loss or gradient "
                            f"(limit max_nonfinite_updates={config.max_nonfinite_updates}); lower the "
                            "learning rates or check the environment's rewards/observations"
                        )
                    stats_sum.zero_()
                    ep_sums.zero_()
                    max_streak.zero_()
                    updates_in_window = 0
                    window_start, window_step = time.perf_counter(), global_step
                if global_step >= next_eval and not last:
                    next_eval += config.eval_every
                    train_seconds += time.perf_counter() - tic
                    returns = evaluate(
                        agent, eval_env_id, episodes=config.eval_episodes, seed=config.seed + 1000, device=device
                    )
                    evals.append(EvalRecord(global_step, float(returns.mean()), float(returns.std()), train_seconds))
                    logger.log(global_step, {"eval/mean_return": evals[-1].mean, "eval/std_return": evals[-1].std})
                    window_start = tic = time.perf_counter()
                if global_step >= next_ckpt and not last:
                    next_ckpt += config.checkpoint_every
                    checkpoint(global_step)
                if stop.stop:
                    interrupted = True
                    break
            train_seconds += time.perf_counter() - tic

        # --- the end: final checkpoint and evaluation -------------------------------------
        path = checkpoint(global_step)
        if interrupted:
            logger.message(f"interrupted at step {global_step}: checkpoint written to {path}")
            final_mean = final_std = float("nan")
        elif config.final_eval_episodes > 0:
            returns = evaluate(
                agent, eval_env_id, episodes=config.final_eval_episodes, seed=config.seed + 2000, device=device
            )
            final_mean, final_std = float(returns.mean()), float(returns.std())
            evals.append(EvalRecord(global_step, final_mean, final_std, train_seconds))
            logger.log(global_step, {"eval/final_mean_return": final_mean, "eval/final_std_return": final_std})
            logger.message(
                f"final deterministic eval over {config.final_eval_episodes} episodes on {eval_env_id}: "
                f"{final_mean:.1f} ± {final_std:.1f}  (run folder: {run_dir})"
            )
        else:
            final_mean = final_std = float("nan")
    finally:
        logger.close()
        env.close()
    return TrainResult(run_dir, final_mean, final_std, evals, train_seconds, interrupted)

