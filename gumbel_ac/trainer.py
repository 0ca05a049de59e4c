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

Under ``torchrun --nproc_per_node=P`` (:mod:`gumbel_ac.distributed`, docs/distributed.md)
each rank runs this same loop on its own envs and replay; the hooks are few: the update's
``grad_hook`` averages the gradient over ranks, the log window is summed over ranks, the stop
flag is agreed, and rank 0 alone logs, evaluates and checkpoints. ``global_step`` counts the
env steps of all ranks.

Resume (``config.resume``, docs/resume.md): every piece of loop state goes into each
checkpoint and is put back before the loop starts, so on CPU a resumed run writes the same
metrics and weights as one that was never stopped. What is saved and how it is checked lives
in :mod:`gumbel_ac.resume`; it runs only in the bookkeeping phase and before the loop.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gumbel_ac.agent import make_agent
from gumbel_ac.buffer import ReplayBuffer
from gumbel_ac.checkpoint import resume_candidates, save_checkpoint, saved_config, write_json_atomic
from gumbel_ac.config import Config, ConfigError, merge_resume_config
from gumbel_ac.distributed import DistContext, SilentLogger, launched_world_size, setup
from gumbel_ac.distributions import UnsupportedSpaceError
from gumbel_ac.estimators import EstimatorFn, get_estimator
from gumbel_ac.evaluation import evaluate
from gumbel_ac.fused import FusedUpdate, fused_unsupported
from gumbel_ac.graphs import CapturedStep
from gumbel_ac.logger import MetricsLogger, truncate_metrics
from gumbel_ac.losses import UpdateStats, make_optimizer, update
from gumbel_ac.resume import TRAINING_STATE_VERSION, collect_state, restore, resume_config, torch_env_of
from gumbel_ac.vector import UnknownEnvError, describe_spaces, make_env

__all__ = [
    "EvalRecord", "TrainResult", "TrainingError", "TRAINING_STATE_VERSION", "resume_config", "train", "train_seeds",
]




class TrainingError(RuntimeError):
    """Training cannot go on (e.g. repeated non-finite losses); the message says why."""


class EnvConfigError(ConfigError, UnknownEnvError):
    """``--env``/``--eval-env`` names no registered env: a ConfigError found at start-up
    (still an UnknownEnvError for callers that catch that)."""


class SpaceConfigError(ConfigError, UnsupportedSpaceError):
    """The env's spaces cannot be trained on: a ConfigError found at start-up (still an
    UnsupportedSpaceError for callers that catch that)."""


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



# --------------------------------------------------------------------------------------
# Start-up checks (outside the rollout/update phases).
# --------------------------------------------------------------------------------------


def _make_env_checked(env_id: str, num_envs: int, device: torch.device, **env_kwargs: Any) -> Any:
    """``make_env``, with an unknown id or unsupported spaces turned into a start-up ConfigError."""
    try:
        return make_env(env_id, num_envs=num_envs, device=device, **env_kwargs)
    except TypeError as exc:  # a constructor that does not take one of env_kwargs
        raise ConfigError(f"env {env_id} rejected env_kwargs: {exc}") from None
    except UnknownEnvError as exc:
        raise EnvConfigError(str(exc)) from None
    except UnsupportedSpaceError as exc:
        raise SpaceConfigError(str(exc)) from None


def _device_memory_bytes(device: torch.device) -> int | None:
    """Total memory of ``device`` (None when unknown)."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[1])
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None


def _check_replay_fits(config: Config, obs_dim: int, num_heads: int, device: torch.device) -> None:
    """Refuse a replay buffer larger than the device's memory before allocating it.

    Why: ``torch.zeros`` of hundreds of GB either fails deep in training set-up or, with
    Linux overcommit, gets the process OOM-killed later with no message at all.
    """
    row = 2 * obs_dim * 4 + num_heads * 8 + 4 + 1
    need = config.buffer_size * row
    have = _device_memory_bytes(device)
    if have is not None and need > have:
        raise ConfigError(
            f"buffer_size={config.buffer_size} needs {need / 2**30:.1f} GiB for the replay buffer "
            f"({row} bytes per transition) but the {device.type} device has {have / 2**30:.1f} GiB; "
            "lower --buffer-size"
        )


def _next_boundary(step: int, every: int) -> float:
    """The first multiple of ``every`` after ``step`` (``every <= 0``: never; log: every step)."""
    if every <= 0:
        return math.inf
    return (step // every + 1) * every

# --------------------------------------------------------------------------------------
# The trainer.
# --------------------------------------------------------------------------------------


def train(config: Config) -> TrainResult:
    """Train an agent as ``config`` says; write the run folder; return the final evaluation.

    With ``config.resume`` set, continue that run from its newest good checkpoint instead
    (docs/resume.md). ``config`` is then the continued run's config: fields in
    :data:`gumbel_ac.config.RESUME_OVERRIDABLE` are taken from it, every other field must
    equal the run's saved value (or be left at its default, meaning "the run's value").
    :func:`resume_config` builds such a config from the run's saved one.
    """
    config.validate()
    resume_dir: Path | None = None
    candidates: list[Path] = []
    if config.resume is not None:
        resume_dir, candidates = resume_candidates(config.resume)
        config = merge_resume_config(saved_config(config.resume), config)
        config.runs_dir, config.run_name = str(resume_dir.parent), resume_dir.name
        config.validate()

    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    if config.deterministic_cuda:
        # cuBLAS needs a fixed workspace to be deterministic; it reads this at initialization.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        dist_ctx = setup(config)  # a single process unless launched by torchrun with P > 1
        result = _train(config, resume_dir, candidates, dist_ctx)
        dist_ctx.close()  # barrier, then leave the process group (not on errors: peers may be gone)
        return result
    finally:
        if config.deterministic_cuda:
            torch.use_deterministic_algorithms(previous_deterministic)


def _train(config: Config, resume_dir: Path | None, candidates: list[Path], dist_ctx: DistContext) -> TrainResult:
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    device = dist_ctx.device
    torch.manual_seed(config.seed)  # initial weights: the same on every rank (and broadcast anyway)
    seed = dist_ctx.rank_seed(config.seed)  # this rank's envs and sampling; config.seed on rank 0
    np.random.seed(seed)

    # --- environments, agent, optimizer, replay ------------------------------------------
    env = _make_env_checked(config.env, config.num_envs, device, **config.env_kwargs_dict())
    try:
        eval_env_id = config.eval_env or config.env
        spec, obs_dim = env.spec, env.obs_dim
        spaces = describe_spaces(env.single_observation_space, env.single_action_space)
        if eval_env_id != config.env:  # fail now, not at the first evaluation hours later
            probe = _make_env_checked(eval_env_id, 1, device, **config.eval_env_kwargs())
            eval_spaces = describe_spaces(probe.single_observation_space, probe.single_action_space)
            probe.close()
            if eval_spaces != spaces:
                raise ConfigError(
                    f"eval_env {eval_env_id} has spaces {eval_spaces}, but env {config.env} has {spaces}; "
                    "evaluate on an env with the same observation and action spaces"
                )
        _check_replay_fits(config, obs_dim, spec.num_heads, device)
    except BaseException:
        env.close()
        raise
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
        capturable=config.cuda_graphs and device.type == "cuda",
    )
    estimator = build_estimator(config)
    buffer = ReplayBuffer(config.buffer_size, obs_dim, spec.num_heads, device)
    act_gen = torch.Generator(device=device).manual_seed(seed)
    update_gen = torch.Generator(device=device).manual_seed(seed + 1)
    replay_gen = torch.Generator(device=device).manual_seed(seed + 2)
    torch_env = torch_env_of(env)
    generators = {"act": act_gen, "update": update_gen, "replay": replay_gen}

    # Device-side accumulators, read once per log interval.
    num_stats = len(UpdateStats.NAMES)
    stats_sum = torch.zeros(num_stats, device=device)
    ep_sums = torch.zeros(3, device=device)  # count, return sum, length sum
    streak = torch.zeros((), device=device)
    max_streak = torch.zeros((), device=device)
    accumulators = {"stats_sum": stats_sum, "ep_sums": ep_sums, "streak": streak, "max_streak": max_streak}

    updates_in_window = 0
    global_step = 0
    evals: list[EvalRecord] = []
    train_seconds = 0.0
    notes: list[str] = []  # start-up messages, printed once the logger exists

    obs = env.reset(seed=seed)

    # --- resume: put every piece of loop state back (gumbel_ac/resume.py) ------------------
    resumed_from: Path | None = None
    resumed_finished = False
    if resume_dir is not None and dist_ctx.is_main:  # checkpoints hold rank 0's state
        try:
            point = restore(
                resume_dir, candidates, config=config, device=device, spaces=spaces, agent=agent,
                optimizer=optimizer, flat_grad=flat_grad, buffer=buffer, env=env, obs=obs,
                generators=generators, accumulators=accumulators, notes=notes,
            )
        except BaseException:
            env.close()
            raise
        resumed_from, resumed_finished = point.checkpoint, point.finished
        global_step, updates_in_window, obs = point.global_step, point.updates_in_window, point.obs
        train_seconds = point.train_seconds
        evals = [EvalRecord(*e) for e in point.evals]

    # --- distributed start: every rank takes rank 0's weights, Adam state and counters ------
    global_step, updates_in_window = dist_ctx.sync_start(agent, optimizer, [global_step, updates_in_window])
    steps_per_iter = config.num_envs * dist_ctx.world_size  # env steps of all ranks per iteration
    if global_step % steps_per_iter:
        env.close()
        raise ConfigError(f"the checkpoint's step {global_step} is not a multiple of num_envs x ranks = "
                          f"{steps_per_iter}: resume with the number of ranks it was trained with")
    if resume_dir is not None and not dist_ctx.is_main:
        # Ranks > 0 are not in the checkpoint: re-seed from (seed, rank, step), empty replay.
        seed = dist_ctx.resume_seed(config.seed, global_step)
        torch.manual_seed(seed)
        np.random.seed(seed)
        for i, gen in enumerate(generators.values()):
            gen.manual_seed(seed + i)
        obs = env.reset(seed=seed)
    rows_added = 0  # this rank's env rows since the start; the same number on every rank

    if dist_ctx.is_main:
        run_dir = prepare_run_dir(config)
        write_json_atomic(run_dir / "config.json", config.to_dict())
    else:
        run_dir = Path(config.runs_dir) / (config.run_name or "")
    if resumed_from is not None:
        dropped = truncate_metrics(run_dir / "metrics.jsonl", global_step)
        notes.insert(0, f"resuming {run_dir} from {resumed_from.name} at step {global_step} "
                        f"({dropped} metrics line(s) written after that checkpoint dropped)")
    # The update phase as one body: run eagerly, or captured once and replayed as a CUDA graph
    # (--cuda-graphs, gumbel_ac/graphs.py), where every input that changes is a device tensor.
    graphed = config.cuda_graphs and device.type == "cuda" and not dist_ctx.enabled
    tau_t = torch.zeros((), device=device)  # the temperature, for the captured body

    fused_why_not = fused_unsupported(agent, config.estimator)
    if config.update_impl == "fused" and fused_why_not:
        raise ConfigError(f"--update-impl fused cannot be used: {fused_why_not}; use --update-impl autograd")
    fused = FusedUpdate(agent, optimizer, flat_grad) if config.update_impl != "autograd" and not fused_why_not else None

    sample = buffer.sample_on_device if graphed else buffer.sample
    options: dict[str, Any] = dict(gamma=config.gamma, target_update_rate=config.target_update_rate,
                                   autotune_alpha=config.autotune_alpha, generator=update_gen,
                                   grad_hook=dist_ctx.grad_hook)

    def update_body(tau: float | torch.Tensor) -> None:
        batch = sample(config.batch_size, generator=replay_gen)
        if fused is not None:
            stats = fused(batch, tau=tau, **options)
        else:
            stats = update(agent, optimizer, flat_grad, batch, estimator, tau=tau, **options)
        packed = stats.as_tensor()
        stats_sum.add_(packed)
        # In place: ``accumulators`` (saved in checkpoints) must keep these tensors.
        streak.add_(packed[-1]).mul_(packed[-1])
        torch.maximum(max_streak, streak, out=max_streak)

    if config.cuda_graphs and not graphed:
        why = "needs a CUDA device" if device.type != "cuda" else "not under torchrun (the all-reduce is not captured)"
        notes.append(f"--cuda-graphs {why}; running the update eagerly")
    captured_update = CapturedStep(
        lambda: update_body(tau_t), generators=[replay_gen, update_gen], enabled=graphed,
        report=lambda message: logger.message(message),
    )

    logger: MetricsLogger | SilentLogger = SilentLogger() if not dist_ctx.is_main else MetricsLogger(
        run_dir,
        total_steps=config.total_steps,
        estimator=config.estimator,
        progress=config.progress,
        track=config.track,
        wandb_project=config.wandb_project,
        wandb_entity=config.wandb_entity,
        run_name=run_dir.name,
        config=config.to_dict(),
        start_step=global_step,
    )
    for note in notes:
        logger.message(note)

    iterations = math.ceil(config.total_steps / steps_per_iter)
    end_step = iterations * steps_per_iter

    def checkpoint(step: int, finished: bool) -> Path | None:
        """Save weights and the whole loop state (bookkeeping phase only: it reads the device)."""
        tensors, tmeta = collect_state(config, optimizer, buffer, torch_env, obs, generators, accumulators)
        tmeta.update(
            global_step=step,
            updates_in_window=updates_in_window,
            train_seconds=train_seconds + (time.perf_counter() - tic),
            evals=[[e.step, e.mean, e.std, e.train_seconds] for e in evals],
            finished=finished,
            device=device.type,
        )
        try:
            return save_checkpoint(
                run_dir, step=step, agent=agent, config=config, spaces=spaces, keep=config.keep_checkpoints,
                training_state=tensors, training_meta=tmeta,
            )
        except OSError as exc:  # disk full etc.: report, keep the previous checkpoint, go on
            logger.message(f"warning: checkpoint at step {step} failed ({exc}); the previous one is kept")
            return None

    next_log: float = _next_boundary(global_step, config.log_every) if config.log_every > 0 else 0
    next_eval = _next_boundary(global_step, config.eval_every)
    next_ckpt = _next_boundary(global_step, config.checkpoint_every)
    window_start, window_step = time.perf_counter(), global_step
    interrupted = False
    start_step = global_step
    tic = time.perf_counter()
    sync_guard = config.debug_syncs and device.type == "cuda"

    def periodic_eval() -> None:
        nonlocal train_seconds, window_start, tic
        train_seconds += time.perf_counter() - tic
        returns = evaluate(
            agent, eval_env_id, episodes=config.eval_episodes, seed=config.seed + 1000, device=device,
            env_kwargs=config.eval_env_kwargs(),
        )
        evals.append(EvalRecord(global_step, float(returns.mean()), float(returns.std()), train_seconds))
        logger.log(global_step, {"eval/mean_return": evals[-1].mean, "eval/std_return": evals[-1].std})
        window_start = tic = time.perf_counter()

    try:
        with _StopFlag() as stop:
            tic = time.perf_counter()
            if resumed_finished and global_step < end_step and config.eval_every > 0 \
                    and global_step % config.eval_every == 0:
                # A finished run skipped the periodic evaluation at its last step (the final
                # one took its place, and its rows were dropped): an extended run does it now,
                # as an uninterrupted longer run would have.
                periodic_eval()
            for iteration in range(global_step // steps_per_iter, iterations):
                if sync_guard:
                    torch.cuda.set_sync_debug_mode("error")
                # 1. rollout ---------------------------------------------------------------
                global_step += steps_per_iter
                if global_step <= config.learning_starts:
                    action = agent.random_actions(config.num_envs, act_gen, device)
                else:
                    action = agent.act(obs, generator=act_gen)
                step = env.step(action)
                buffer.add(obs, action, step.reward, step.next_obs, step.terminated, step.valid)
                obs = step.obs
                rows_added += config.num_envs
                done = step.episode_done.to(ep_sums.dtype)
                ep_sums += torch.stack(
                    [done.sum(), (step.episode_return * done).sum(), (step.episode_length * done).sum()]
                )

                # 2. update ----------------------------------------------------------------
                # Ranks must agree on whether to update (it is a collective): under torchrun the
                # gate counts rows offered, equal on every rank, not rows kept (NEXT_STEP envs).
                filled = rows_added if dist_ctx.enabled else len(buffer)
                if global_step > config.learning_starts and filled >= config.batch_size:
                    tau = config.temperature_at(global_step)
                    optimizer.lr_scale = config.lr_scale_at(global_step)
                    if graphed:
                        tau_t.fill_(tau)  # a kernel with a host scalar: no sync
                    for _ in range(config.updates_per_step):
                        if graphed:
                            captured_update()
                        else:
                            update_body(tau)
                        updates_in_window += 1

                if sync_guard:
                    torch.cuda.set_sync_debug_mode("default")
                # 3. bookkeeping -----------------------------------------------------------
                # An interrupt does not log a partial window: the window's sums go into the
                # checkpoint, so a resumed run writes exactly the rows of an unstopped one.
                last = global_step >= end_step
                if global_step >= next_log or last:
                    next_log = _next_boundary(global_step, config.log_every) if config.log_every > 0 else 0
                    # Summed over ranks (one collective per log interval): episode statistics
                    # of all ranks' envs, update statistics averaged over ranks.
                    host = dist_ctx.sum(torch.cat([stats_sum, ep_sums, max_streak.reshape(1)])).cpu().tolist()
                    ranks = dist_ctx.world_size
                    now = time.perf_counter()
                    metrics: dict[str, float] = {
                        "charts/sps": (global_step - window_step) / max(now - window_start, 1e-9),
                        "charts/gumbel_temperature": config.temperature_at(global_step),
                        "charts/lr_scale": config.lr_scale_at(global_step),
                        "charts/updates": float(updates_in_window),
                    }
                    if updates_in_window:
                        for name, value in zip(UpdateStats.NAMES, host[:num_stats]):
                            metrics[name] = value / (updates_in_window * ranks)
                    count = host[num_stats]
                    if count > 0:
                        metrics["charts/episodic_return"] = host[num_stats + 1] / count
                        metrics["charts/episodic_length"] = host[num_stats + 2] / count
                    logger.log(global_step, metrics)
                    streak_max = host[-1] / ranks  # the same on every rank (checked after the all-reduce)
                    if streak_max >= config.max_nonfinite_updates:
                        raise TrainingError(
                            f"{int(streak_max)} consecutive updates had a non-finite loss or gradient "
                            f"(limit max_nonfinite_updates={config.max_nonfinite_updates}); lower the "
                            "learning rates or check the environment's rewards/observations"
                        )
                    stats_sum.zero_()
                    ep_sums.zero_()
                    max_streak.zero_()
                    updates_in_window = 0
                    window_start, window_step = time.perf_counter(), global_step
                if dist_ctx.is_main and global_step >= next_eval and not last:
                    next_eval = _next_boundary(global_step, config.eval_every)
                    periodic_eval()
                if dist_ctx.is_main and global_step >= next_ckpt and not last:
                    next_ckpt = _next_boundary(global_step, config.checkpoint_every)
                    checkpoint(global_step, finished=False)
                if dist_ctx.agree(stop.stop, iteration):  # every rank stops at the same iteration
                    interrupted = not last
                    break
            train_seconds += time.perf_counter() - tic
            tic = time.perf_counter()

            # --- the end: final checkpoint (still under the stop flag: a SIGTERM now
            # must not kill the write) ---------------------------------------------------
            path: Path | None = None
            if dist_ctx.is_main and global_step == start_step and resumed_from is not None:
                path = resumed_from  # nothing happened since: keep that checkpoint
            elif dist_ctx.is_main:
                path = checkpoint(global_step, finished=not interrupted)
        if interrupted:
            logger.message(f"interrupted at step {global_step}: checkpoint written to {path}; "
                           f"continue with: python train.py --resume {run_dir}")
            final_mean = final_std = float("nan")
        elif config.final_eval_episodes > 0 and dist_ctx.is_main:
            returns = evaluate(
                agent, eval_env_id, episodes=config.final_eval_episodes, seed=config.seed + 2000, device=device,
                env_kwargs=config.eval_env_kwargs(),
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
        if sync_guard:  # an error raised inside the guarded phases leaves the mode set
            torch.cuda.set_sync_debug_mode("default")
        logger.close()
        env.close()
    return TrainResult(run_dir, final_mean, final_std, evals, train_seconds, interrupted)


def train_seeds(config: Config) -> list[TrainResult]:
    """Train ``config.num_seeds`` independent agents (seeds ``seed .. seed + S - 1``) in turn.

    Why a loop and not agents vectorized over a seed axis (PureJaxRL's vmap): on a CPU the
    update is per-op overhead bound and one process per core is the parallelism that pays
    (README, "Many seeds"); on a GPU, raise ``num_envs`` and ``batch_size`` first. Each seed
    gets its own run folder ``<run-name>__s<seed>``, so eval.py, resume and the lab work on
    it unchanged.
    """
    config.validate()
    if config.num_seeds > 1 and launched_world_size() > 1:
        raise ConfigError("--num-seeds > 1 cannot run under torchrun; launch one torchrun per seed")
    if config.num_seeds == 1:
        return [train(config)]
    base = config.run_name or default_run_name(dataclasses.replace(config, seed=config.seed))
    results = []
    for k in range(config.num_seeds):
        seed = config.seed + k
        results.append(
            train(dataclasses.replace(config, seed=seed, num_seeds=1, run_name=f"{base}__s{seed}"))
        )
    if len(results) > 1:
        finals = np.array([r.final_mean for r in results], dtype=float)
        print(
            f"{len(results)} seeds: final eval mean {np.nanmean(finals):.1f} "
            f"(min {np.nanmin(finals):.1f}, max {np.nanmax(finals):.1f})",
            flush=True,
        )
    return results
