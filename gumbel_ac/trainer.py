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

Resume (``config.resume``, docs/resume.md): every piece of loop state -- weights, Adam
moments, log-alpha, the step counter, the three ``torch.Generator`` states, the torch env's
state tensors and generator, the current observation, the half-filled metrics window and the
replay buffer's physical rows -- goes into each checkpoint (``training.safetensors`` + the
manifest's ``training`` object) and is put back before the loop starts, so on CPU a resumed
run writes the same metrics and weights as one that was never stopped. The save/restore code
runs only in the bookkeeping phase and before the loop.
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

from gumbel_ac.agent import Agent, make_agent
from gumbel_ac.buffer import ReplayBuffer
from gumbel_ac.checkpoint import (
    TRAINING_FILE,
    CheckpointError,
    check_spaces_match,
    clean_stale_temp,
    list_checkpoints,
    load_run,
    read_training_state,
    resume_candidates,
    save_checkpoint,
    saved_config,
    write_json_atomic,
)
from gumbel_ac.config import Config, ConfigError, merge_resume_config
from gumbel_ac.distributions import UnsupportedSpaceError
from gumbel_ac.estimators import EstimatorFn, get_estimator
from gumbel_ac.evaluation import evaluate
from gumbel_ac.logger import MetricsLogger, truncate_metrics
from gumbel_ac.optim import FlatAdam
from gumbel_ac.losses import UpdateStats, make_optimizer, update
from gumbel_ac.vector import TorchVectorAdapter, UnknownEnvError, describe_spaces, make_env, resolve_device

#: Version of the ``training`` manifest object and ``training.safetensors`` layout.
TRAINING_STATE_VERSION = 1


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
# Start-up checks and resume helpers (all outside the rollout/update phases).
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


def _resume_env_seed(seed: int, step: int) -> int:
    """Seed for re-seeding a Gymnasium (numpy) env on resume: a function of (seed, step) only."""
    return int(np.random.SeedSequence([seed % 2**63, step]).generate_state(1)[0])


def _torch_env(env: Any) -> Any | None:
    """The ``gumbel_ac.envs`` env behind an adapter, if it exposes its state tensors, else None.

    Uses TorchVectorEnv's attributes directly (``_state``, ``_reset_states_K``, ...): the base
    class keeps ALL its mutable state there (envs/base.py), so saving them is exact.
    """
    inner = getattr(env, "env", None)
    needed = ("_state", "_reset_states_K", "_reset_index", "_ep_return_N", "_ep_length_N", "_generator")
    if isinstance(env, TorchVectorAdapter) and all(hasattr(inner, a) for a in needed):
        return inner
    return None


def _replay_state(buffer: ReplayBuffer, config: Config) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Replay rows for a checkpoint, and how they were taken.

    ``exact``: the physical rows ``[0, size)`` and the write position, so the restored buffer
    is the same ring and ``sample`` draws the same transitions. ``newest``: the buffer is
    larger than ``replay_save_cap``; only the newest rows, oldest first (resumed sampling then
    differs). ``none``: replay not saved (``--no-save-replay`` or cap 0).
    """
    size = len(buffer)
    if not config.save_replay or config.replay_save_cap == 0 or size == 0:
        return {}, {"mode": "none", "size": 0, "pos": 0}
    if size <= config.replay_save_cap:
        rows = slice(0, size)
        tensors = {
            "replay.obs": buffer.obs_CD[rows],
            "replay.next_obs": buffer.next_obs_CD[rows],
            "replay.action": buffer.action_CH[rows],
            "replay.reward": buffer.reward_C[rows],
            "replay.terminated": buffer.terminated_C[rows],
        }
        return tensors, {"mode": "exact", "size": size, "pos": buffer.pos}
    state = buffer.state_dict()
    cap = config.replay_save_cap
    return {f"replay.{k}": v[-cap:] for k, v in state.items()}, {"mode": "newest", "size": cap, "pos": 0}


class _Restore:
    """Checks a checkpoint's training state against the live objects, then applies it.

    ``check`` raises :class:`CheckpointError` naming ``training.safetensors`` (or the
    manifest) and the problem, and changes nothing; ``apply`` only runs after every check
    passed, so a bad checkpoint never leaves the trainer half-restored and the resumer can
    fall back to an older one.
    """

    def __init__(self, ckpt: Path, tensors: dict[str, torch.Tensor], tmeta: dict[str, Any]) -> None:
        self.ckpt, self.tensors, self.tmeta = ckpt, tensors, tmeta
        self.file = ckpt / TRAINING_FILE
        self.manifest = ckpt / "meta.json"
        self.used: set[str] = set()

    def fail(self, msg: str, manifest: bool = False) -> CheckpointError:
        return CheckpointError(f"{self.manifest if manifest else self.file}: {msg}")

    def field(self, key: str, typ: type | tuple[type, ...]) -> Any:
        value = self.tmeta.get(key)
        if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
            raise self.fail(f"training field {key!r} is missing or has the wrong type", manifest=True)
        return value

    def tensor(self, key: str, like: torch.Tensor | None = None, *, shape: tuple[int, ...] | None = None,
               dtype: torch.dtype | None = None) -> torch.Tensor:
        """The stored tensor ``key``, checked to have ``like``'s (or the given) shape and dtype."""
        if key not in self.tensors:
            raise self.fail(f"tensor {key!r} is missing")
        t = self.tensors[key]
        want_shape = tuple(like.shape) if like is not None else shape
        want_dtype = like.dtype if like is not None else dtype
        if (want_shape is not None and tuple(t.shape) != want_shape) or (want_dtype is not None and t.dtype != want_dtype):
            raise self.fail(f"tensor {key!r} is {tuple(t.shape)} {t.dtype}, expected {want_shape} {want_dtype}")
        self.used.add(key)
        return t

    def generator_state(self, key: str, device: torch.device) -> torch.Tensor:
        state = self.tensor(key, dtype=torch.uint8)
        try:  # a scratch generator: a bad state is refused without touching the live one
            torch.Generator(device=device).set_state(state)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise self.fail(f"tensor {key!r} is not a valid {device.type} generator state ({exc})") from None
        return state


def _check_grad_views(agent: Agent, flat_grad: torch.Tensor) -> None:
    """Every trained parameter's ``.grad`` must still live inside ``flat_grad``.

    ``losses.make_optimizer`` makes each ``.grad`` a view into one flat buffer; restoring a
    checkpoint copies values in place and must never replace those tensors.
    """
    lo = flat_grad.data_ptr()
    hi = lo + flat_grad.numel() * flat_grad.element_size()
    for p in list(agent.actor.parameters()) + list(agent.critic.parameters()):
        g = p.grad
        if g is None or not (lo <= g.data_ptr() < hi):
            raise RuntimeError("internal error: a parameter's .grad no longer views the flat gradient buffer")


# --------------------------------------------------------------------------------------
# The trainer.
# --------------------------------------------------------------------------------------


def resume_config(path: str | Path, **overrides: Any) -> Config:
    """The config to pass to :func:`train` to continue the run at ``path``.

    The run's saved config with ``resume=path`` and ``overrides`` applied (e.g.
    ``total_steps=200_000``); ``train.py --resume`` builds the same thing from its flags.
    Overriding a field outside :data:`gumbel_ac.config.RESUME_OVERRIDABLE` to a new value is
    refused by :func:`train`.
    """
    return dataclasses.replace(saved_config(path), resume=str(path), **overrides)


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
        return _train(config, resume_dir, candidates)
    finally:
        if config.deterministic_cuda:
            torch.use_deterministic_algorithms(previous_deterministic)


def _train(config: Config, resume_dir: Path | None, candidates: list[Path]) -> TrainResult:
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)

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
    )
    estimator = build_estimator(config)
    buffer = ReplayBuffer(config.buffer_size, obs_dim, spec.num_heads, device)
    act_gen = torch.Generator(device=device).manual_seed(config.seed)
    update_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    replay_gen = torch.Generator(device=device).manual_seed(config.seed + 2)
    torch_env = _torch_env(env)

    # Device-side accumulators, read once per log interval.
    num_stats = len(UpdateStats.NAMES)
    stats_sum = torch.zeros(num_stats, device=device)
    ep_sums = torch.zeros(3, device=device)  # count, return sum, length sum
    streak = torch.zeros((), device=device)
    max_streak = torch.zeros((), device=device)
    updates_in_window = 0
    global_step = 0
    evals: list[EvalRecord] = []
    train_seconds = 0.0
    notes: list[str] = []  # start-up messages, printed once the logger exists

    obs = env.reset(seed=config.seed)

    # --- resume: put every piece of loop state back ---------------------------------------
    resumed_from: Path | None = None
    resumed_finished = False
    if resume_dir is not None:
        problems: list[str] = []
        for ckpt in candidates:
            try:
                state = _load_resume_state(
                    ckpt, config, device, spaces, agent, optimizer, buffer, torch_env, obs,
                    {"act": act_gen, "update": update_gen, "replay": replay_gen},
                    {"stats_sum": stats_sum, "ep_sums": ep_sums, "streak": streak, "max_streak": max_streak},
                )
            except CheckpointError as exc:
                problems.append(str(exc))
                notes.append(f"warning: cannot resume from {ckpt.name}: {exc}; trying an older checkpoint")
                continue
            resumed_from = ckpt
            break
        if resumed_from is None:
            env.close()
            raise CheckpointError(f"{resume_dir}: no checkpoint can be resumed: " + " | ".join(problems))
        _check_grad_views(agent, flat_grad)
        global_step = state["global_step"]
        updates_in_window = state["updates_in_window"]
        train_seconds = state["train_seconds"]
        evals = [EvalRecord(*e) for e in state["evals"]]
        resumed_finished = state["finished"]
        if torch_env is not None:
            obs = state["obs"]
        else:
            # A Gymnasium numpy env's state cannot be captured in general: re-seed it from
            # (seed, step). Episodes in flight at the checkpoint are cut (docs/resume.md).
            obs = env.reset(seed=_resume_env_seed(config.seed, global_step))
            notes.append(
                f"note: {config.env} is a Gymnasium numpy env: its state is not restorable; it was re-seeded "
                f"from (seed, step) and the run continues from fresh episodes"
            )
        for ckpt in list_checkpoints(resume_dir):  # newer than the resume point: corrupt, set aside
            if int(ckpt.name.split("_")[1]) > global_step:
                ckpt.rename(ckpt.with_name(f"bad_{ckpt.name}"))
                notes.append(f"warning: set aside unreadable newer checkpoint as {ckpt.with_name('bad_' + ckpt.name)}")
        clean_stale_temp(resume_dir)

    run_dir = prepare_run_dir(config)
    write_json_atomic(run_dir / "config.json", config.to_dict())
    if resumed_from is not None:
        dropped = truncate_metrics(run_dir / "metrics.jsonl", global_step)
        notes.insert(0, f"resuming {run_dir} from {resumed_from.name} at step {global_step} "
                        f"({dropped} metrics line(s) written after that checkpoint dropped)")
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
        start_step=global_step,
    )
    for note in notes:
        logger.message(note)

    iterations = math.ceil(config.total_steps / config.num_envs)
    end_step = iterations * config.num_envs

    def checkpoint(step: int, finished: bool) -> Path | None:
        """Save weights and the whole loop state (bookkeeping phase only: it reads the device)."""
        tensors, tmeta = _collect_resume_state(
            config, optimizer, buffer, torch_env, obs,
            {"act": act_gen, "update": update_gen, "replay": replay_gen},
            {"stats_sum": stats_sum, "ep_sums": ep_sums, "streak": streak, "max_streak": max_streak},
        )
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
            for _ in range(global_step // config.num_envs, iterations):
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
                # An interrupt does not log a partial window: the window's sums go into the
                # checkpoint, so a resumed run writes exactly the rows of an unstopped one.
                last = global_step >= end_step
                if global_step >= next_log or last:
                    next_log = _next_boundary(global_step, config.log_every) if config.log_every > 0 else 0
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
                    next_eval = _next_boundary(global_step, config.eval_every)
                    periodic_eval()
                if global_step >= next_ckpt and not last:
                    next_ckpt = _next_boundary(global_step, config.checkpoint_every)
                    checkpoint(global_step, finished=False)
                if stop.stop:
                    interrupted = not last
                    break
            train_seconds += time.perf_counter() - tic
            tic = time.perf_counter()

            # --- the end: final checkpoint (still under the stop flag: a SIGTERM now
            # must not kill the write) ---------------------------------------------------
            if global_step == start_step and resumed_from is not None:
                path: Path | None = resumed_from  # nothing happened since: keep that checkpoint
            else:
                path = checkpoint(global_step, finished=not interrupted)
        if interrupted:
            logger.message(f"interrupted at step {global_step}: checkpoint written to {path}; "
                           f"continue with: python train.py --resume {run_dir}")
            final_mean = final_std = float("nan")
        elif config.final_eval_episodes > 0:
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
        logger.close()
        env.close()
    return TrainResult(run_dir, final_mean, final_std, evals, train_seconds, interrupted)


def _collect_resume_state(
    config: Config,
    optimizer: FlatAdam,
    buffer: ReplayBuffer,
    torch_env: Any | None,
    obs: torch.Tensor,
    generators: dict[str, torch.Generator],
    accumulators: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors for ``training.safetensors`` and the manifest's ``training`` object (without
    the loop counters, which the caller adds). Reads the device: bookkeeping phase only."""
    optim_state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {
        "optim.exp_avg": optim_state["exp_avg"],
        "optim.exp_avg_sq": optim_state["exp_avg_sq"],
    }
    for name, gen in generators.items():
        tensors[f"rng.{name}"] = gen.get_state()
    tensors["rng.torch_cpu"] = torch.get_rng_state()
    for name, t in accumulators.items():
        tensors[f"loop.{name}"] = t
    tensors["loop.obs"] = obs
    env_meta: dict[str, Any] = {"kind": "gymnasium"}
    if torch_env is not None:
        for i, t in enumerate(torch_env._state):
            tensors[f"env.state.{i}"] = t
        for i, t in enumerate(torch_env._reset_states_K):
            tensors[f"env.reset_states.{i}"] = t
        tensors["env.ep_return"] = torch_env._ep_return_N
        tensors["env.ep_length"] = torch_env._ep_length_N
        tensors["env.generator"] = torch_env._generator.get_state()
        env_meta = {
            "kind": "torch",
            "num_state": len(torch_env._state),
            "num_reset_states": len(torch_env._reset_states_K),
            "reset_index": int(torch_env._reset_index),
        }
    replay_tensors, replay_meta = _replay_state(buffer, config)
    tensors.update(replay_tensors)
    tmeta = {
        "version": TRAINING_STATE_VERSION,
        "optimizer_steps": int(optim_state["steps"]),
        "env": env_meta,
        "replay": replay_meta,
    }
    return tensors, tmeta


def _load_resume_state(
    ckpt: Path,
    config: Config,
    device: torch.device,
    spaces: dict[str, Any],
    agent: Agent,
    optimizer: FlatAdam,
    buffer: ReplayBuffer,
    torch_env: Any | None,
    obs: torch.Tensor,
    generators: dict[str, torch.Generator],
    accumulators: dict[str, torch.Tensor],
) -> dict[str, Any]:
    """Check a checkpoint's whole state against the live objects, then load it into them.

    Raises :class:`CheckpointError` (changing nothing) if anything is missing, mistyped or
    mis-shaped. Returns the loop counters and the saved observation.
    """
    loaded = load_run(ckpt, device="cpu")
    meta = loaded.meta
    check_spaces_match(meta, spaces, config.env)
    if meta["obs_dim"] != agent.obs_dim or tuple(meta["action_nvec"]) != tuple(agent.spec.nvec):
        raise CheckpointError(f"{ckpt / 'meta.json'}: the agent's shapes do not match env {config.env}")
    tensors, tmeta = read_training_state(ckpt, meta)
    r = _Restore(ckpt, tensors, tmeta)
    if r.field("version", int) != TRAINING_STATE_VERSION:
        raise r.fail(f"training state version {tmeta.get('version')!r} is not supported", manifest=True)
    if r.field("device", str) != device.type:
        raise r.fail(
            f"the run was trained on {tmeta['device']} and its RNG states are {tmeta['device']}-specific; "
            f"resume it with --device {tmeta['device']}", manifest=True)
    global_step = r.field("global_step", int)
    if global_step != meta["step"] or global_step % config.num_envs or global_step < 0:
        raise r.fail(f"global_step {global_step} does not match the checkpoint step {meta['step']}", manifest=True)
    updates_in_window = r.field("updates_in_window", int)
    train_seconds = r.field("train_seconds", (int, float))
    evals = r.field("evals", list)
    if not all(isinstance(e, list) and len(e) == 4 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                           for x in e) for e in evals):
        raise r.fail("training field 'evals' must be a list of [step, mean, std, seconds]", manifest=True)
    finished = r.field("finished", bool)

    # Optimizer: FlatAdam's two moment vectors (the flat parameter's shape) and step count.
    steps = r.field("optimizer_steps", int)
    if steps < 0:
        raise r.fail("training field 'optimizer_steps' is negative", manifest=True)
    optim_state = optimizer.state_dict()  # learning rates, betas, eps: from this run's config
    optim_state["steps"] = steps
    for key in ("exp_avg", "exp_avg_sq"):
        optim_state[key] = r.tensor(f"optim.{key}", optim_state[key])
    gen_states = {name: r.generator_state(f"rng.{name}", device) for name in generators}
    cpu_rng = r.generator_state("rng.torch_cpu", torch.device("cpu"))
    acc = {name: r.tensor(f"loop.{name}", t) for name, t in accumulators.items()}
    saved_obs = r.tensor("loop.obs", obs)

    # Env.
    env_meta = r.field("env", dict)
    env_tensors: dict[str, Any] = {}
    if torch_env is not None:
        if env_meta.get("kind") != "torch":
            raise r.fail("the checkpoint holds no torch env state for this torch env", manifest=True)
        if env_meta.get("num_state") != len(torch_env._state) or \
                env_meta.get("num_reset_states") != len(torch_env._reset_states_K):
            raise r.fail("the env state's tensor count does not match the env", manifest=True)
        reset_index = env_meta.get("reset_index")
        if not isinstance(reset_index, int) or isinstance(reset_index, bool) or \
                not 0 <= reset_index <= max(1, int(getattr(torch_env, "reset_block", 1))):
            raise r.fail("the env's reset_index is out of range", manifest=True)
        env_tensors = {
            "state": [r.tensor(f"env.state.{i}", t) for i, t in enumerate(torch_env._state)],
            "reset_states": [r.tensor(f"env.reset_states.{i}", t) for i, t in enumerate(torch_env._reset_states_K)],
            "ep_return": r.tensor("env.ep_return", torch_env._ep_return_N),
            "ep_length": r.tensor("env.ep_length", torch_env._ep_length_N),
            "generator": r.generator_state("env.generator", torch_env._generator.device),
            "reset_index": reset_index,
        }

    # Replay.
    replay_meta = r.field("replay", dict)
    mode, size, pos = replay_meta.get("mode"), replay_meta.get("size"), replay_meta.get("pos")
    if mode not in ("exact", "newest", "none") or not isinstance(size, int) or not isinstance(pos, int) \
            or isinstance(size, bool) or isinstance(pos, bool) or not 0 <= size <= buffer.capacity \
            or not 0 <= pos < buffer.capacity or (mode == "exact" and size < buffer.capacity and pos != size):
        raise r.fail(f"training field 'replay' is invalid ({replay_meta!r})", manifest=True)
    replay: dict[str, torch.Tensor] = {}
    if mode != "none":
        like = {"obs": buffer.obs_CD, "next_obs": buffer.next_obs_CD, "action": buffer.action_CH,
                "reward": buffer.reward_C, "terminated": buffer.terminated_C}
        replay = {k: r.tensor(f"replay.{k}", shape=(size,) + tuple(t.shape[1:]), dtype=t.dtype) for k, t in like.items()}
    extra = sorted(set(tensors) - r.used)
    if extra:
        raise r.fail(f"unexpected tensors {extra[:5]}")

    # --- everything checked: apply ---------------------------------------------------------
    agent.load_state_dict(loaded.agent.state_dict())
    optimizer.load_state_dict(optim_state)  # copies in place: the flat views survive
    for name, gen in generators.items():
        gen.set_state(gen_states[name])
    torch.set_rng_state(cpu_rng)
    for name, t in accumulators.items():
        t.copy_(acc[name])
    if torch_env is not None:
        torch_env._state = tuple(t.to(torch_env.device) for t in env_tensors["state"])
        torch_env._reset_states_K = tuple(t.to(torch_env.device) for t in env_tensors["reset_states"])
        torch_env._reset_index = env_tensors["reset_index"]
        torch_env._ep_return_N = env_tensors["ep_return"].to(torch_env.device)
        torch_env._ep_length_N = env_tensors["ep_length"].to(torch_env.device)
        torch_env._generator.set_state(env_tensors["generator"])
    if mode == "exact":
        rows = slice(0, size)
        buffer.obs_CD[rows] = replay["obs"].to(buffer.device)
        buffer.next_obs_CD[rows] = replay["next_obs"].to(buffer.device)
        buffer.action_CH[rows] = replay["action"].to(buffer.device)
        buffer.reward_C[rows] = replay["reward"].to(buffer.device)
        buffer.terminated_C[rows] = replay["terminated"].to(buffer.device)
        buffer.pos, buffer.size = pos, size
    elif mode == "newest":
        buffer.load_state_dict(replay)
    return {
        "global_step": global_step,
        "updates_in_window": updates_in_window,
        "train_seconds": float(train_seconds),
        "evals": [(int(e[0]), float(e[1]), float(e[2]), float(e[3])) for e in evals],
        "obs": saved_obs.to(device),
        "finished": finished,
    }


def train_seeds(config: Config) -> list[TrainResult]:
    """Train ``config.num_seeds`` independent agents (seeds ``seed .. seed + S - 1``) in turn.

    Why a loop and not agents vectorized over a seed axis (PureJaxRL's vmap): on a CPU the
    update is per-op overhead bound and one process per core is the parallelism that pays
    (README, "Many seeds"); on a GPU, raise ``num_envs`` and ``batch_size`` first. Each seed
    gets its own run folder ``<run-name>__s<seed>``, so eval.py, resume and the lab work on
    it unchanged.
    """
    config.validate()
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
