"""The training loop: read it top to bottom.

``train(config)`` builds the parts from the config (envs, a :class:`~gumbel_ac.learner.Learner`,
a replay buffer, a :class:`~gumbel_ac.loop_state.LoopState`, a logger) and runs iterations of
three named phases (PureJaxRL style), each a method of :class:`_Run`:

1. **rollout** (:meth:`_Run.rollout`) -- the agent acts on every env at once, the envs step,
   transitions go to the replay buffer;
2. **update** (:meth:`_Run.update`) -- ``updates_per_step`` calls of
   :meth:`Learner.step <gumbel_ac.learner.Learner.step>` on replay minibatches;
3. **bookkeeping** (:meth:`_Run.bookkeeping`) -- every ``log_every`` env steps the window's
   metrics are read from the device in ONE transfer and logged; periodic evaluation and
   checkpoints.

All loop state lives in one ``LoopState`` (the loop's carry and the checkpoint payload);
nothing is kept in closures. With the batched torch envs of ``gumbel_ac.envs`` phases 1-2
never synchronize with the host: no ``.item()``, no numpy, no Python branch on a tensor value
(tests/test_fast_path.py counts). Gymnasium's numpy envs necessarily copy actions and
observations each step.

Under ``torchrun --nproc_per_node=P`` (:mod:`gumbel_ac.distributed`, docs/distributed.md)
each rank runs this same loop on its own envs and replay; the hooks are few: the learner's
``grad_hook`` averages the gradient over ranks, the log window is summed over ranks, the stop
flag is agreed, and rank 0 alone logs, evaluates and checkpoints. ``global_step`` counts the
env steps of all ranks.

Resume (``config.resume``, docs/resume.md): a checkpoint holds every component's
``state_dict()`` (:mod:`gumbel_ac.resume`), put back before the loop starts, so on CPU a
resumed run writes the same metrics and weights as one that was never stopped.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gumbel_ac import budget
from gumbel_ac.agent import make_agent
from gumbel_ac.buffer import ReplayBuffer, SharedObsReplayBuffer
from gumbel_ac.checkpoint import (
    BEST_DIR,
    list_checkpoints,
    resume_candidates,
    save_checkpoint,
    saved_config,
    write_json_atomic,
)
from gumbel_ac.config import Config, ConfigError, merge_resume_config
from gumbel_ac.distributed import DistContext, SilentLogger, launched_world_size, setup
from gumbel_ac.distributions import UnsupportedSpaceError
from gumbel_ac.encoders import EncoderKind, ObsBounds, rescale_coefficients, resolve_kind
from gumbel_ac.evaluation import evaluate
from gumbel_ac.exploration import CountBonus
from gumbel_ac.fsutil import FolderInUseError, FolderLock
from gumbel_ac.graphs import CapturedStep
from gumbel_ac.learner import Learner, TrainingError
from gumbel_ac.logger import MetricsLogger, format_value, truncate_metrics
from gumbel_ac.loop_state import EvalRecord, LoopState
from gumbel_ac.losses import UpdateStats
from gumbel_ac.resume import TRAINING_STATE_VERSION, collect_state, restore, resume_config, resume_overrides
from gumbel_ac.seeding import derive_seed
from gumbel_ac.vector import UnknownEnvError, describe_spaces, eval_env_kwargs, make_env

__all__ = [
    "EvalRecord",
    "TrainResult",
    "TrainingError",
    "TRAINING_STATE_VERSION",
    "resume_config",
    "train",
    "train_seeds",
]


class EnvConfigError(ConfigError, UnknownEnvError):
    """``--env``/``--eval-env`` names no registered env: a ConfigError found at start-up
    (still an UnknownEnvError for callers that catch that)."""


class SpaceConfigError(ConfigError, UnsupportedSpaceError):
    """The env's spaces cannot be trained on: a ConfigError found at start-up (still an
    UnsupportedSpaceError for callers that catch that)."""


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    run_dir: Path
    final_mean: float
    final_std: float
    evals: list[EvalRecord] = field(default_factory=list)
    train_seconds: float = 0.0
    interrupted: bool = False


#: What a run writes into its folder; a new run refuses a folder holding any of them.
RUN_FILES = ("config.json", "metrics.jsonl", "checkpoints", BEST_DIR, "wandb", "tensorboard")

#: Periodic checkpoint writes that may fail in a row (warned each time) before the run stops
#: instead of training on with an ever older checkpoint as its only safety net.
MAX_FAILED_CHECKPOINTS = 3


def default_run_name(config: Config) -> str:
    env = config.env.replace("/", "_").replace(":", "_")  # module:EnvId ids; ':' is not portable
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

    def __enter__(self) -> _StopFlag:
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


def _resolve_encoder(config: Config, env: Any) -> EncoderKind:
    """The encoder ``config.encoder`` means on ``env``'s observations (a :class:`ConfigError`
    when a convolutional one is asked for on observations it cannot read)."""
    try:
        return resolve_kind(config.encoder, env.encode.image_shape)
    except ValueError as exc:
        raise ConfigError(f"{config.env}: {exc}") from None


def _obs_bounds(config: Config, env: Any, encoder: EncoderKind) -> ObsBounds | None:
    """The rows' ``(low, high)`` the networks rescale from when ``config.obs_rescale`` is on
    (None when off); a :class:`ConfigError` for image observations or when no dimension is
    bounded."""
    if not config.obs_rescale:
        return None
    if encoder != "mlp" or env.encode.kind == "image":
        raise ConfigError(
            f"obs_rescale on {config.env}: it rescales vector observations, not images "
            "(their encoder already scales pixels); turn it off: --no-obs-rescale"
        )
    low, high = env.encode.row_bounds()
    try:
        rescale_coefficients((low, high), env.obs_dim)
    except ValueError as exc:
        raise ConfigError(f"obs_rescale on {config.env}: {exc}") from None
    return low.tolist(), high.tolist()


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


def _next_boundary(step: int, every: int) -> float:
    """The first multiple of ``every`` after ``step`` (``every <= 0``: never; log: every step)."""
    if every <= 0:
        return math.inf
    return (step // every + 1) * every


# --------------------------------------------------------------------------------------
# The trainer.
# --------------------------------------------------------------------------------------


def train(config: Config) -> TrainResult:
    """Train ONE agent as ``config`` says; write the run folder; return the final evaluation.

    With ``config.resume`` set, continue that run from its newest good checkpoint instead
    (docs/resume.md). ``config`` is then the continued run's config: fields in
    :data:`gumbel_ac.config.RESUME_OVERRIDABLE` are taken from it, every other field must
    equal the run's saved value (or be left at its default, meaning "the run's value").
    :func:`resume_config` builds such a config from the run's saved one. ``num_seeds > 1`` is
    :func:`train_seeds`'s job and refused here (it would otherwise train one agent silently).
    """
    given, config = config, config.validate()  # a resolved copy; `given` keeps what the caller set
    if config.num_seeds > 1:
        raise ConfigError(
            f"train() trains one agent but num_seeds={config.num_seeds}; "
            "call gumbel_ac.train_seeds(config) to train every seed (train.py does)"
        )
    resume_dir: Path | None = None
    candidates: list[Path] = []
    if config.resume is not None:
        resume_dir, candidates = resume_candidates(config.resume)
        config = merge_resume_config(saved_config(config.resume), given, resume_overrides(given))
        config = dataclasses.replace(config, runs_dir=str(resume_dir.parent), run_name=resume_dir.name).validate()

    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    if config.deterministic_cuda:
        # cuBLAS needs a fixed workspace to be deterministic; it reads this at initialization.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        dist_ctx = setup(config)  # a single process unless launched by torchrun with P > 1
        run = _Run(config, dist_ctx, resuming=resume_dir is not None)
        try:
            run.build()
            if resume_dir is not None:
                run.resume(resume_dir, candidates)
            run.start()
            result = run.finish(run.loop())
        finally:
            run.close()
        dist_ctx.close()  # barrier, then leave the process group (not on errors: peers may be gone)
        return result
    finally:
        if config.deterministic_cuda:
            torch.use_deterministic_algorithms(previous_deterministic)


class _Run:
    """One training run's parts and its loop, phase by phase (see the module docstring).

    The loop's state is :attr:`state` (a :class:`LoopState`); the other attributes are the
    parts built once (envs, learner, buffer, logger) and wall-clock timers, which are not
    state: a resumed run measures its own time.
    """

    def __init__(self, config: Config, dist_ctx: DistContext, *, resuming: bool) -> None:
        self.config, self.dist = config, dist_ctx
        self.resuming = resuming
        self.lock: FolderLock | None = None
        self.failed_checkpoints = 0  # consecutive failed checkpoint writes
        self.final_pending = False  # the end-of-run checkpoint is being written
        self.device = dist_ctx.device
        self.eval_env_id = config.eval_env or config.env
        self.env: Any = None
        self.logger: MetricsLogger | SilentLogger = SilentLogger()
        self.notes: list[str] = []  # start-up messages, printed once the logger exists
        self.resumed_from: Path | None = None
        self.sync_guard = config.debug_syncs and self.device.type == "cuda"
        self.steps_per_iter = config.num_envs * dist_ctx.world_size  # env steps of all ranks per iteration
        self.end_step = math.ceil(config.total_steps / self.steps_per_iter) * self.steps_per_iter
        self.tic = self.window_start = time.perf_counter()
        self.window_step = 0

    # ------------------------------------------------------------------ build
    def build(self) -> None:
        """Envs (checked), learner, replay buffer and a fresh loop state."""
        config, device = self.config, self.device
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        torch.manual_seed(config.seed)  # initial weights: the same on every rank (and broadcast anyway)
        self.seed = self.dist.rank_seed(config.seed)  # this rank's envs and sampling; config.seed on rank 0
        np.random.seed(self.seed)
        # The memory the run needs (networks, replay, envs, update) against the device's free
        # memory, from a one-env probe, before anything large is allocated.
        probe = _make_env_checked(config.env, 1, device, **config.env_kwargs_dict())
        try:
            encoder = _resolve_encoder(config, probe)
            obs_bounds = _obs_bounds(config, probe, encoder)
            budget.check_fits(
                config,
                probe.obs_dim,
                probe.action_spec.nvec,
                device,
                obs_itemsize=probe.encode.dtype.itemsize,
                encoder=(encoder, probe.encode.image_shape),
            )
        finally:
            probe.close()
        self.env = _make_env_checked(config.env, config.num_envs, device, **config.env_kwargs_dict())
        action_spec, obs_dim = self.env.action_spec, self.env.obs_dim
        self.spaces = describe_spaces(self.env.single_observation_space, self.env.single_action_space)
        if self.eval_env_id != config.env:  # fail now, not at the first evaluation hours later
            probe = _make_env_checked(self.eval_env_id, 1, device, **config.eval_env_kwargs())
            eval_spaces = describe_spaces(probe.single_observation_space, probe.single_action_space)
            probe.close()
            if eval_spaces != self.spaces:
                raise ConfigError(
                    f"eval_env {self.eval_env_id} has spaces {eval_spaces}, but env {config.env} has "
                    f"{self.spaces}; evaluate on an env with the same observation and action spaces"
                )
        agent = make_agent(
            obs_dim=obs_dim,
            spec=action_spec,
            hidden_sizes=config.hidden_sizes,
            alpha=config.alpha if config.alpha > 0 else 1e-8,
            target_entropy_ratio=config.target_entropy_ratio,
            encoder=encoder,
            image_shape=self.env.encode.image_shape,
            pixel_scale=self.env.encode.pixel_scale,
            share_encoder=config.share_encoder,
            critic_layer_norm=config.critic_layer_norm,
            num_critics=config.n_critics,
            obs_bounds=obs_bounds,
            actor_average=config.actor_average_rate is not None,
        ).to(device)
        if config.alpha == 0:
            agent.log_alpha.data.fill_(-math.inf)  # no entropy term at all
        self.graphed = config.cuda_graphs and device.type == "cuda" and not self.dist.enabled
        self.learner = Learner.from_config(agent, config, capturable=self.graphed, grad_hook=self.dist.grad_hook)
        # Image observations are stored once (the next one is the same env's next row): half the
        # memory of a frame replay. Our torch envs and Gymnasium's SyncVectorEnv step SAME_STEP.
        buffer_cls = SharedObsReplayBuffer if self.env.encode.kind == "image" else ReplayBuffer
        if buffer_cls is SharedObsReplayBuffer and config.n_step > 1:
            raise ConfigError(
                f"n_step={config.n_step} on {config.env}: image observations use the shared-observation "
                "replay, which holds one-step rows; use --n-step 1"
            )
        self.buffer = buffer_cls(
            config.buffer_size,
            obs_dim,
            action_spec.num_heads,
            device,
            self.env.encode.dtype,
            n_step=config.n_step,
            gamma=config.gamma,
        )
        self.buffer.save_cap = config.replay_save_cap if config.save_replay else 0
        self.bonus = self._make_bonus()
        #: The bonus is stored with the reward at collection (else read at sampling time).
        self.bonus_at_collect = config.count_bonus_timing == "collect"
        self.state = LoopState.fresh(self.env.reset(seed=self.seed), self.seed, device)
        #: What a checkpoint holds, by name; each part has ``state_dict``/``check_state_dict``/
        #: ``load_state_dict``. A Gymnasium numpy env is not among them (not restorable).
        self.parts: dict[str, Any] = {"learner": self.learner, "loop": self.state, "replay": self.buffer}
        if self.env.state_dict() is not None:
            self.parts["env"] = self.env
        if self.bonus is not None:
            self.parts["exploration"] = self.bonus
        if self.dist.is_main:
            self.claim_run_dir()

    def _make_bonus(self) -> CountBonus | None:
        """The count-based exploration bonus when ``count_bonus > 0``; a ``ConfigError`` for
        observations it cannot count (images, unbounded boxes)."""
        config = self.config
        if config.count_bonus <= 0:
            return None
        try:
            return CountBonus.for_encoder(
                self.env.encode,
                bins=config.count_bins,
                scale=config.count_bonus,
                device=self.device,
            )
        except ValueError as exc:
            raise ConfigError(f"count_bonus on {config.env}: {exc}; or turn it off: --count-bonus 0") from None

    def claim_run_dir(self) -> None:
        """Create the run folder, lock it for this process's life, and make sure a NEW run
        does not write into another run's files (refused, or cleared with ``--overwrite``)."""
        config = self.config
        self.run_dir = prepare_run_dir(config)
        try:
            self.lock = FolderLock(self.run_dir).acquire()
        except FolderInUseError as exc:
            raise ConfigError(str(exc)) from None
        if self.resuming:
            return
        found = [name for name in RUN_FILES if (self.run_dir / name).exists()]
        if found and not config.overwrite:
            raise ConfigError(
                f"run folder {self.run_dir} already holds a run ({', '.join(found)}); continue it with "
                f"--resume {self.run_dir}, start a new run under another --run-name, or replace it with --overwrite"
            )
        for name in found:  # --overwrite: the old run's files go, the new run starts clean
            path = self.run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

    def resume(self, resume_dir: Path, candidates: list[Path]) -> None:
        """Put a checkpoint's state back (rank 0: checkpoints hold rank 0's state; the other
        ranks take it from rank 0 in :meth:`start`)."""
        if not self.dist.is_main:
            return
        config, state = self.config, self.state
        self.resumed_from = restore(
            resume_dir,
            candidates,
            components=self.parts,
            config=config,
            device=self.device,
            spaces=self.spaces,
            notes=self.notes,
        )
        if "env" not in self.parts:
            # A Gymnasium numpy env's state cannot be captured in general: re-seed it from
            # (seed, step). Episodes in flight at the checkpoint are cut (docs/resume.md).
            state.obs = self.env.reset(seed=derive_seed(config.seed, state.global_step))
            self.notes.append(
                f"note: {config.env} is a Gymnasium numpy env: its state is not restorable; it was re-seeded "
                "from (seed, step) and the run continues from fresh episodes"
            )

    def start(self) -> None:
        """Run folder, ``config.json``, logger and the update's (optionally captured) body."""
        config, state = self.config, self.state
        # Every rank takes rank 0's weights, Adam state and counters.
        state.global_step, state.updates_in_window = self.dist.sync_start(
            self.learner, [state.global_step, state.updates_in_window]
        )
        if state.global_step % self.steps_per_iter:
            raise ConfigError(
                f"the checkpoint's step {state.global_step} is not a multiple of num_envs x ranks = "
                f"{self.steps_per_iter}: resume with the number of ranks it was trained with"
            )
        if self.resuming and not self.dist.is_main:
            # Ranks > 0 are not in the checkpoint: re-seed from (seed, rank, step), empty replay.
            seed = self.dist.resume_seed(config.seed, state.global_step)
            torch.manual_seed(seed)
            np.random.seed(seed)
            state.reseed(seed)
            state.obs = self.env.reset(seed=seed)
        if self.dist.is_main:
            write_json_atomic(self.run_dir / "config.json", config.to_dict())
        else:
            self.run_dir = Path(config.runs_dir) / (config.run_name or "")
        if self.resumed_from is not None:
            dropped = truncate_metrics(self.run_dir / "metrics.jsonl", state.global_step)
            self.notes.insert(
                0,
                f"resuming {self.run_dir} from {self.resumed_from.name} at step {state.global_step} "
                f"({dropped} metrics line(s) written after that checkpoint dropped)",
            )
        if config.preset not in ("auto", "none"):
            from gumbel_ac.presets import preset_for

            applied = {k: v for k, v in preset_for(config.preset).items() if getattr(config, k) == v}
            values = ", ".join(f"{k}={v!r}" for k, v in applied.items()) or "nothing (you set every field it has)"
            self.notes.append(
                f"preset {config.preset}: {values}"
                + " (gumbel_ac/presets.py; flags you set win, --preset none for the plain defaults)"
            )
        if config.cuda_graphs and not self.graphed:
            why = (
                "needs a CUDA device"
                if self.device.type != "cuda"
                else "not under torchrun (the all-reduce is not captured)"
            )
            self.notes.append(f"--cuda-graphs {why}; running the update eagerly")
        if self.dist.is_main:
            self.logger = MetricsLogger(
                self.run_dir,
                total_steps=config.total_steps,
                estimator=config.estimator,
                progress=config.progress,
                track=config.track,
                wandb_project=config.wandb_project,
                wandb_entity=config.wandb_entity,
                run_name=self.run_dir.name,
                config=config.to_dict(),
                start_step=state.global_step,
            )
        for note in self.notes:
            self.logger.message(note)
        # The update body runs eagerly, or is captured once and replayed as a CUDA graph
        # (--cuda-graphs, gumbel_ac/graphs.py), where every input that changes is a device tensor.
        self.temperature_t = torch.zeros((), device=self.device)
        gens = state.generators
        self.captured_update = CapturedStep(
            lambda: self.update_body(self.temperature_t),
            generators=[gens["replay"], gens["update"]],
            enabled=self.graphed,
            report=self.logger.message,
        )
        self.sample = self.buffer.sample_on_device if self.graphed else self.buffer.sample

    # ------------------------------------------------------------------ the loop
    def loop(self) -> bool:
        """Iterate the three phases up to ``total_steps``; True if a signal interrupted it."""
        config, state = self.config, self.state
        self.next_log = _next_boundary(state.global_step, config.log_every) if config.log_every > 0 else 0
        self.next_eval = _next_boundary(state.global_step, config.eval_every)
        self.next_ckpt = _next_boundary(state.global_step, config.checkpoint_every)
        self.start_step = self.window_step = state.global_step
        interrupted = False
        with _StopFlag() as stop:
            self.tic = self.window_start = time.perf_counter()
            if (
                state.finished
                and state.global_step < self.end_step
                and config.eval_every > 0
                and state.global_step % config.eval_every == 0
            ):
                # A finished run skipped the periodic evaluation at its last step (the final
                # one took its place, and its rows were dropped): an extended run does it now,
                # as an uninterrupted longer run would have.
                self.periodic_eval()
            state.finished = False
            for iteration in range(state.global_step // self.steps_per_iter, self.end_step // self.steps_per_iter):
                if self.sync_guard:
                    torch.cuda.set_sync_debug_mode("error")
                self.rollout()
                self.update()
                if self.sync_guard:
                    torch.cuda.set_sync_debug_mode("default")
                last = state.global_step >= self.end_step
                self.bookkeeping(last)
                if self.dist.agree(stop.stop, iteration):  # every rank stops at the same iteration
                    interrupted = not last
                    break
            self._pause_clock()
            # The final checkpoint, still under the stop flag: a SIGTERM now must not kill the write.
            # It must succeed (also when interrupted): a run that ends is resumable from its end.
            self.final_pending = True
            self.final_checkpoint = self.checkpoint(finished=not interrupted)
        return interrupted

    def rollout(self) -> None:
        """Phase 1: act on every env, step them, store the transitions."""
        config, state, agent = self.config, self.state, self.learner.agent
        state.global_step += self.steps_per_iter
        if state.global_step <= config.learning_starts:
            action = agent.random_actions(config.num_envs, state.generators["act"], self.device)
        else:
            action = agent.explore(state.obs, config.act, epsilon=config.act_epsilon, generator=state.generators["act"])
        step = self.env.step(action)
        reward = step.reward
        if self.bonus is not None:
            if config.count_bonus_schedule != "constant":  # beta of this step, read here or in the update
                self.bonus.set_scale(config.count_bonus_at(state.global_step))
            self.bonus.observe(step.next_obs, step.valid)
            if self.bonus_at_collect:  # stored with the reward, this visit counted (n >= 1)
                reward = reward + self.bonus.bonus(step.next_obs).to(reward.dtype)
        dropped = self.buffer.add(state.obs, action, reward, step.next_obs, step.terminated, step.valid, step.truncated)
        state.obs = step.obs
        state.rows_added += config.num_envs
        done = step.episode_done.to(state.ep_sums.dtype)
        state.ep_sums += torch.stack(
            [
                done.sum(),
                (step.episode_return * done).sum(),
                (step.episode_length * done).sum(),
                dropped.to(done.dtype),
            ]
        )

    def update(self) -> None:
        """Phase 2: ``updates_per_step`` learner steps once the buffer holds a batch."""
        config, state = self.config, self.state
        # Ranks must agree on whether to update (it is a collective): under torchrun the
        # gate counts rows offered, equal on every rank, not rows kept (NEXT_STEP envs).
        filled = state.rows_added if self.dist.enabled else len(self.buffer)
        if state.global_step <= config.learning_starts or filled < config.batch_size:
            return
        temperature = config.temperature_at(state.global_step)
        self.learner.optimizer.lr_scale = config.lr_scale_at(state.global_step)
        self.learner.target_update_rate = config.target_update_rate_at(state.global_step)
        if self.graphed:
            self.temperature_t.fill_(temperature)  # a kernel with a host scalar: no sync
        for _ in range(config.updates_per_step):
            if self.graphed:
                self.captured_update()
            else:
                self.update_body(temperature)
            state.updates_in_window += 1

    def update_body(self, temperature: float | torch.Tensor) -> None:
        """One minibatch and one learner step, its stats added to the window (device only)."""
        gens = self.state.generators
        batch = self.sample(self.config.batch_size, generator=gens["replay"])
        if self.bonus is not None and not self.bonus_at_collect:  # shrinks as the state is revisited
            batch = dataclasses.replace(batch, reward_B=batch.reward_B + self.bonus.bonus(batch.next_obs_BD))
        stats = self.learner.step(batch, temperature=temperature, generator=gens["update"])
        self.state.stats_sum.add_(stats.as_tensor())

    # ------------------------------------------------------------------ bookkeeping
    def bookkeeping(self, last: bool) -> None:
        """Phase 3: the log window, periodic evaluation, periodic checkpoint.

        An interrupt does not log a partial window: the window's sums go into the checkpoint,
        so a resumed run writes exactly the rows of an unstopped one.
        """
        config, step = self.config, self.state.global_step
        if step >= self.next_log or last:
            self.next_log = _next_boundary(step, config.log_every) if config.log_every > 0 else 0
            self.flush_window()
        if self.dist.is_main and step >= self.next_eval and not last:
            self.next_eval = _next_boundary(step, config.eval_every)
            self.periodic_eval()
        if self.dist.is_main and step >= self.next_ckpt and not last:
            self.next_ckpt = _next_boundary(step, config.checkpoint_every)
            self.checkpoint(finished=False)

    def flush_window(self) -> None:
        """Read the window's sums in ONE transfer (summed over ranks), log them, check the
        non-finite guard, start a new window."""
        config, state = self.config, self.state
        num_stats = len(UpdateStats.NAMES)
        parts = [state.stats_sum, state.ep_sums, self.learner.max_nonfinite_streak.reshape(1)]
        if self.bonus is not None:  # explored grid cells, in the same transfer
            parts.append(self.bonus.cells_visited.to(state.stats_sum.dtype).reshape(1))
        packed = torch.cat(parts)
        host = self.dist.sum(packed).cpu().tolist()
        ranks, now = self.dist.world_size, time.perf_counter()
        metrics: dict[str, float] = {
            "charts/sps": (state.global_step - self.window_step) / max(now - self.window_start, 1e-9),
            "charts/gumbel_temperature": config.temperature_at(state.global_step),
            "charts/lr_scale": config.lr_scale_at(state.global_step),
            "charts/updates": float(state.updates_in_window),
        }
        if state.updates_in_window:
            for name, value in zip(UpdateStats.NAMES, host[:num_stats], strict=True):
                metrics[name] = value / (state.updates_in_window * ranks)
        count, dropped = host[num_stats], host[num_stats + 3]
        if count > 0:
            metrics["charts/episodic_return"] = host[num_stats + 1] / count
            metrics["charts/episodic_length"] = host[num_stats + 2] / count
        if self.bonus is not None:  # each rank counts its own visits: the mean over ranks
            metrics["charts/count_cells_visited"] = host[num_stats + 5] / ranks
        if dropped > 0:
            metrics["charts/nonfinite_transitions"] = dropped
            self.logger.message(
                f"warning: {int(dropped)} transition(s) with a non-finite observation or reward in steps "
                f"{self.window_step}-{state.global_step} were not stored; check the environment"
            )
        self.logger.log(state.global_step, metrics)
        # The same values on every rank after the all-reduce: every rank stops alike.
        skipped = host[num_stats - 1]  # the sum of UpdateStats.nonfinite, the last stat
        self.learner.check_nonfinite(host[num_stats + 4] / ranks, skipped, state.updates_in_window * ranks)
        state.reset_window()
        self.learner.reset_window()
        self.window_start, self.window_step = time.perf_counter(), state.global_step

    def _pause_clock(self) -> None:
        """Fold the training time since :attr:`tic` into the state (before evals/checkpoints)."""
        now = time.perf_counter()
        self.state.train_seconds += now - self.tic
        self.tic = now

    def _evaluate(self, episodes: int, *, seed: int) -> Any:
        """Deterministic returns of the agent on the eval env (never compiled: evaluation
        builds envs for a few episodes, a compile would cost more than it saves)."""
        return evaluate(
            self.learner.agent,
            self.eval_env_id,
            episodes=episodes,
            seed=seed,
            device=self.device,
            env_kwargs=eval_env_kwargs(self.config.eval_env_kwargs()),
        )

    def periodic_eval(self) -> None:
        """Evaluate the deterministic policy; the time it takes is not training time."""
        config, state = self.config, self.state
        self._pause_clock()
        returns = self._evaluate(config.eval_episodes, seed=config.seed + 1000)
        state.evals.append(
            EvalRecord(state.global_step, float(returns.mean()), float(returns.std()), state.train_seconds)
        )
        self.logger.log(
            state.global_step, {"eval/mean_return": state.evals[-1].mean, "eval/std_return": state.evals[-1].std}
        )
        if state.evals[-1].mean > max((e.mean for e in state.evals[:-1]), default=-math.inf):
            self.save_best(state.evals[-1])
        self.tic = self.window_start = time.perf_counter()

    def save_best(self, record: EvalRecord) -> None:
        """Keep the policy of the best periodic evaluation so far in ``run_dir/best`` (weights
        only: resume always continues from the last checkpoint). A failed write is a warning:
        the periodic checkpoints, not this copy, are the run's safety net."""
        try:
            save_checkpoint(
                self.run_dir,
                step=record.step,
                agent=self.learner.agent,
                config=self.config,
                spaces=self.spaces,
                name=BEST_DIR,
                training_meta={"best_eval": {"mean": record.mean, "std": record.std}},
            )
        except OSError as exc:
            self.logger.message(f"warning: could not save the best policy (step {record.step}): {exc}")

    def checkpoint(self, *, finished: bool) -> Path | None:
        """Save the weights and every component's state (rank 0; bookkeeping phase only: it
        reads the device). A failed write (disk full) is reported and training goes on."""
        state = self.state
        if not self.dist.is_main:
            return None
        if state.global_step == self.start_step and self.resumed_from is not None:
            return self.resumed_from  # nothing happened since: keep that checkpoint
        self._pause_clock()
        state.finished = finished
        tensors, tmeta = collect_state(self.parts, self.device)
        try:
            path = save_checkpoint(
                self.run_dir,
                step=state.global_step,
                agent=self.learner.agent,
                config=self.config,
                spaces=self.spaces,
                keep=self.config.keep_checkpoints,
                training_state=tensors,
                training_meta=tmeta,
            )
        except OSError as exc:  # disk full etc.: the previous checkpoints are untouched
            self.failed_checkpoints += 1
            newest = list_checkpoints(self.run_dir)
            on_disk = f"the newest on disk is {newest[-1]}" if newest else "no checkpoint is on disk"
            if finished or self.failed_checkpoints >= MAX_FAILED_CHECKPOINTS or self.final_pending:
                which = (
                    "final checkpoint"
                    if (finished or self.final_pending)
                    else (f"last {self.failed_checkpoints} checkpoints")
                )
                raise TrainingError(
                    f"the {which} at step {state.global_step} could not be written ({exc}); {on_disk}. "
                    f"Free space in {self.run_dir.parent} (or choose another --runs-dir) and resume"
                ) from None
            self.logger.message(f"warning: checkpoint at step {state.global_step} failed ({exc}); {on_disk}")
            return None
        self.failed_checkpoints = 0
        return path

    # ------------------------------------------------------------------ the end
    def finish(self, interrupted: bool) -> TrainResult:
        """The final deterministic evaluation (unless interrupted); the run's result."""
        config, state = self.config, self.state
        final_mean = final_std = float("nan")
        if interrupted:
            launcher = (
                f"torchrun --nproc_per_node={self.dist.world_size} train.py" if self.dist.enabled else "python train.py"
            )
            self.logger.message(
                f"interrupted at step {state.global_step}: checkpoint written to "
                f"{self.final_checkpoint}; continue with: {launcher} --resume {self.run_dir}"
            )
        elif config.final_eval_episodes > 0 and self.dist.is_main:
            returns = self._evaluate(config.final_eval_episodes, seed=config.seed + 2000)
            final_mean, final_std = float(returns.mean()), float(returns.std())
            state.evals.append(EvalRecord(state.global_step, final_mean, final_std, state.train_seconds))
            self.logger.log(
                state.global_step, {"eval/final_mean_return": final_mean, "eval/final_std_return": final_std}
            )
            self.logger.message(
                f"final deterministic eval over {config.final_eval_episodes} episodes on {self.eval_env_id}: "
                f"{format_value(final_mean)} ± {format_value(final_std)}  (run folder: {self.run_dir})"
            )
        return TrainResult(self.run_dir, final_mean, final_std, state.evals, state.train_seconds, interrupted)

    def close(self) -> None:
        """Release the logger, the envs and the run folder's lock (also on errors)."""
        if self.sync_guard:  # an error raised inside the guarded phases leaves the mode set
            torch.cuda.set_sync_debug_mode("default")
        self.logger.close()
        if self.env is not None:
            self.env.close()
        if self.lock is not None:
            self.lock.release()


def train_seeds(config: Config) -> list[TrainResult]:
    """Train ``config.num_seeds`` independent agents (seeds ``seed .. seed + S - 1``) in turn.

    Why a loop and not agents vectorized over a seed axis (PureJaxRL's vmap): on a CPU the
    update is per-op overhead bound and one process per core is the parallelism that pays
    (docs/performance.md, "Many seeds"); on a GPU, raise ``num_envs`` and ``batch_size`` first. Each seed
    gets its own run folder ``<run-name>__s<seed>``, so eval.py, resume and the lab work on
    it unchanged.
    """
    given, config = config, config.validate()
    if config.num_seeds > 1 and launched_world_size() > 1:
        raise ConfigError("--num-seeds > 1 cannot run under torchrun; launch one torchrun per seed")
    if config.num_seeds == 1:
        return [train(given)]  # as given: a resume_config() keeps the overrides it names
    base = config.run_name or default_run_name(config)
    results = [
        train(dataclasses.replace(config, seed=config.seed + k, num_seeds=1, run_name=f"{base}__s{config.seed + k}"))
        for k in range(config.num_seeds)
    ]
    finals = np.array([r.final_mean for r in results], dtype=float)
    print(
        f"{len(results)} seeds: final eval mean {format_value(float(np.nanmean(finals)))} "
        f"(min {format_value(float(np.nanmin(finals)))}, max {format_value(float(np.nanmax(finals)))})",
        flush=True,
    )
    return results
