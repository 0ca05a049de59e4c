"""The training configuration: one dataclass, every field a ``train.py`` flag.

Field docstrings become ``--help`` text (tyro reads them, as CleanRL does). Defaults are the
settings measured to solve CartPole-v1 fast on a 2-core CPU (README, "Results"); where a
default departs from SAC's usual value the docstring says why.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from gumbel_ac.exploration import MAX_COUNT_BINS
from gumbel_ac.presets import preset_for

#: Fields that older versions wrote into config.json and that no longer exist; a saved
#: config holding them still loads (eval.py on an old run), the value is ignored.
#: ``update_impl``: chose a hand-written gumbel-st update, replaced by the one update path
#: of :class:`gumbel_ac.learner.Learner`.
RETIRED_FIELDS = frozenset({"update_impl"})


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the field and the fix."""


class ConfigWarning(UserWarning):
    """A configuration that runs but probably not as meant (e.g. one that makes no update)."""


# Size caps. Each is far above any setting that trains well and far below one that would ask
# for more memory than a machine has, so a typo or an edited checkpoint fails at start with
# one line instead of allocating gigabytes first. They are the same on every machine: a saved
# config is checked against them when loaded (eval.py, --resume), and a run trained on a big
# machine must load on a small one. Whether a run fits THIS machine is gumbel_ac.budget's job.
#: Parallel envs (and eval envs): 2**24 CartPoles already take ~40 GB of env state.
MAX_NUM_ENVS = 2**24
#: Hidden layers, and the width of each (the checkpoint loader refuses larger ones too).
MAX_HIDDEN_LAYERS = 16
MAX_HIDDEN_WIDTH = 2**16
#: Gumbel draws per action for gumbel-rao (Paulus et al. 2020 use up to 1000).
MAX_RAO_SAMPLES = 10_000
#: Episodes of one evaluation: each is one env of the batched eval env.
MAX_EVAL_EPISODES = 100_000
#: Critics of an ensemble (REDQ uses 10; each is a stacked MLP, so memory grows linearly).
MAX_N_CRITICS = 256
#: Steps per n-step return: the writer keeps n steps of every env (Rainbow uses 3; beyond ~20
#: the return is a Monte-Carlo one in all but name).
MAX_N_STEP = 1000
#: Learning rates: Adam's step is about lr per parameter; above 10 training diverges at once.
MAX_LR = 10.0
#: torch threads: a fixed cap rather than one tied to this machine's cores, so a config saved
#: on a 256-core machine still loads on a laptop; a million threads made torch fail at start.
MAX_NUM_THREADS = 1024
#: Seeds are used as 32-bit numpy seeds with offsets added (eval envs, ranks), so every seed of
#: a run -- seed .. seed + num_seeds - 1 -- must be at most this.
MAX_SEED = 2**31 - 1
#: Env steps: counters are int64 tensors in checkpoints.
MAX_TOTAL_STEPS = 2**62
#: Characters of env_kwargs: a real one is a few dozen; JSON parsing a huge or deeply nested
#: string costs memory and recursion before any check runs.
MAX_ENV_KWARGS_CHARS = 65_536
#: dist_timeout_s (datetime.timedelta overflows near 8.6e13 s; 1e9 s is 31 years).
MAX_DIST_TIMEOUT_S = 1e9


#: Fields a resumed run may change (``train.py --resume RUN --total-steps ...``): none of them
#: changes what the agent learns from the data it sees, so the resumed run is still the same
#: experiment. Every other field must match the checkpoint's config (docs/resume.md).
RESUME_OVERRIDABLE: frozenset[str] = frozenset(
    {
        "total_steps",
        "resume",
        "runs_dir",
        "run_name",
        "device",
        "num_threads",
        "progress",
        "track",
        "wandb_project",
        "wandb_entity",
        "eval_every",
        "eval_episodes",
        "final_eval_episodes",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "save_replay",
        "replay_save_cap",
        "deterministic_cuda",
        "dist_timeout_s",
        "debug_syncs",
    }
)


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type hint (int, float, bool, str, Literal, X | None, tuple[int, ...])."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin is tuple:
        (elem, *_rest) = typing.get_args(hint)
        return isinstance(value, tuple) and all(_matches(v, elem) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


#: The attribute (not a dataclass field: not a flag, not saved) by which
#: :meth:`Config.with_overrides` and the command line tell the preset which fields were named.
_NAMED_ATTR = "_named_fields"


def _expected_type(hint: Any) -> str:
    """What a field of type ``hint`` must be, for an error message ("of type int", "one of ...")."""
    if typing.get_origin(hint) is Literal:  # the choices, not the word "Literal"
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(hint))
    return "of type " + (getattr(hint, "__name__", None) or str(hint).replace("typing.", ""))


def _need(cond: bool, msg: str) -> None:
    """Raise :class:`ConfigError` with ``msg`` unless ``cond``."""
    if not cond:
        raise ConfigError(msg)


@dataclass
class Config:
    """Off-policy Gumbel-Softmax actor-critic (SAC-style, discrete actions)."""

    # --- experiment -------------------------------------------------------------------
    env: str = "CartPole-v1"
    """Environment id: any Gymnasium id with a Discrete/MultiDiscrete action space, or one of
    our batched torch envs (``gumbel_ac/CartPole-v1``, ``gumbel_ac/DeepSea-v0``, ...)."""
    preset: str = "auto"
    """Per-env tuned hyperparameters (gumbel_ac/presets.py, RL-Zoo style): "auto" applies the
    env's preset, if it has one, to every field you did not set (a flag you give wins, even one
    that repeats the default; from Python, Config.with_overrides tells the fields you named,
    plain Config(...) can only see fields that differ from the default); "none" uses the plain
    defaults. The values applied are printed at start and saved in config.json, where this
    field then names the preset."""
    env_kwargs: str = ""
    """Keyword arguments for the env constructor, as a JSON object, e.g. '{"size": 20}' for
    gumbel_ac/DeepSea-v0 or '{"is_slippery": false}' for FrozenLake-v1. They also apply to
    evaluation when eval_env is not set. Keys the env factory sets itself (num_envs, device,
    seed, render_mode, ...; gumbel_ac.vector.RESERVED_ENV_KWARGS) are refused: use the flag. For
    gumbel_ac/ envs, keys and value types are checked against the env's constructor at start. At
    most 65536 characters. Evaluation drops compile/compile_mode (a few eval envs do not repay a
    compile; gumbel_ac.vector.eval_env_kwargs). The default, an empty string, passes none."""
    estimator: str = "gumbel-st"
    """Actor gradient estimator: gumbel-st (straight-through Gumbel-Softmax), gumbel-soft,
    score (REINFORCE with baseline), exact (sum over actions), and those the estimator module
    adds (softmax-st, gumbel-rao, reinmax, ...). Changes ONLY the actor's gradient."""
    seed: int = 0
    """Seed for networks, action sampling, replay sampling and environments; in [0, 2**31 - 1],
    and seed + num_seeds - 1 must be too (each seed of the run is used as a 32-bit seed)."""
    num_seeds: int = 1
    """Train this many independent agents, seeds seed, seed+1, ..., one run folder each
    (<run-name>__s<seed>), one after another in this process (docs/performance.md, "Many seeds").
    seed + num_seeds - 1 must be at most 2**31 - 1 (checked at start, not after the first seed)."""
    total_steps: int = 50_000
    """Environment steps to train for (summed over the parallel envs); at most 2**62. A run whose
    learning_starts or batch_size leaves no step to update on gets a ConfigWarning (it is a
    random-policy run: legitimate as a baseline or a smoke test, so not an error)."""
    num_envs: int = 16
    """Parallel environments stepping in one batch; at most 2**24 (and the run must fit the
    device's free memory: checked at start, gumbel_ac/budget.py)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where networks, replay buffer and batched envs live; auto = CUDA when available."""
    num_threads: int = 1
    """torch intra-op threads on CPU (0 = torch's default). 1 is fastest for these small
    networks on a loaded 2-core machine (docs/performance.md). At most 1024."""

    # --- algorithm --------------------------------------------------------------------
    gamma: float = 0.995
    """Discount factor."""
    actor_lr: float = 3e-3
    """Adam learning rate of the actor (3e-3 reached 475 on CartPole in ~30% fewer steps than
    1e-3 over 5 seeds; README, "Results"). All three rates must be in (0, 10]."""
    critic_lr: float = 3e-3
    """Adam learning rate of the twin critics (higher than SAC's 3e-4: measured faster here)."""
    alpha_lr: float = 3e-3
    """Adam learning rate of log(alpha) when autotune_alpha is on."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """Learning-rate schedule of all three rates: constant, or linear decay to 0 at
    total_steps (RL-Zoo's schedule for CartPole; it keeps a solved policy from drifting)."""
    batch_size: int = 0
    """Replay minibatch size per gradient step. 0 = auto: 128 for up to 128 envs, else
    num_envs (capped at 4096), so each update sees about one vector step's worth of data."""
    buffer_size: int = 0
    """Replay buffer capacity in transitions. 0 = auto: max(100_000, 64 * num_envs)."""
    learning_starts: int = 1_000
    """Env steps of uniformly random actions before updates start."""
    act: Literal["sample", "mode", "epsilon"] = "sample"
    """How the behaviour policy acts after warm-up: ``sample`` draws ``a ~ pi(.|s)`` (Gumbel-max),
    ``mode`` takes ``argmax pi`` (no acting noise), ``epsilon`` takes the mode but a uniformly
    random joint action with probability act_epsilon (DQN's exploration, as a control). It
    separates noise in acting from noise in the actor's gradient (``python -m gumbel_ac.study``)."""
    act_epsilon: float = 0.1
    """Probability of a uniformly random action when act is "epsilon"; in [0, 1]."""
    count_bonus: float = 0.0
    """Directed exploration: add beta / sqrt(n(s')) to the reward of every replayed transition,
    beta this value and n(s') the visits so far to the grid cell of its next observation
    (MBIE-EB, Strehl & Littman 2008; count-based exploration, Tang et al. 2017,
    arXiv:1611.04717; gumbel_ac/exploration.py). 0 = off. For sparse-reward tasks the entropy
    bonus cannot solve (MountainCar-v0: random actions never reach the flag). Needs bounded,
    non-image observations. Evaluation returns are the env's own rewards."""
    count_bonus_schedule: Literal["constant", "linear"] = "constant"
    """Scale of the count bonus over the run: constant, or linear decay to 0 at total_steps
    (the bonus pays for exploring early and stops pulling a learnt policy away late)."""
    count_bonus_timing: Literal["sample", "collect"] = "sample"
    """When the count bonus is read: ``sample`` adds ``beta / sqrt(n(s'))`` to every replayed
    transition with the counts of the moment (it shrinks as a state is revisited); ``collect``
    adds it once, when the transition is stored, with the counts then, and the replay keeps it
    (DQN-CTS's pseudo-count bonus, Bellemare et al. 2016, arXiv:1606.01868). Only ``collect``
    combines with n_step > 1: the n-step writer sums stored rewards. The schedule sets beta at
    the moment of reading."""
    count_bins: int = 16
    """Grid cells per observation dimension of the count bonus (the cells span the
    observation space's bounds)."""
    n_step: int = 1
    """Steps of reward per critic target (n-step returns; Rainbow, Hessel et al. 2018): the
    target is ``sum_{j<n} gamma^j r_{t+j} + gamma^n V(s_{t+n})``, cut short where the episode
    ends. n > 1 carries a failure back n steps per backup instead of one, at the price of a
    bias from the stale actions in between (no off-policy correction, as SB3's
    NStepReplayBuffer). 1 is the plain one-step target. Not with image observations (their
    shared-observation replay holds one-step rows), nor with a count bonus read at sampling
    time (count_bonus_timing = "collect" stores it with the reward, and the n-step sum takes it)."""
    updates_per_step: int = 1
    """Gradient steps per vector step (one step of all num_envs envs). The replay ratio is
    updates_per_step * batch_size / num_envs: replayed samples per collected transition."""
    target_update_rate: float = 0.2
    """Polyak rate of the target critics per gradient step (SAC's "tau"; renamed so it cannot be
    confused with the Gumbel temperature). Fast targets trained CartPole fastest here."""
    target_update_rate_final: float | None = 0.005
    """The Polyak rate moves linearly from target_update_rate to this value between env steps
    target_update_anneal_start and target_update_anneal_start + target_update_anneal_steps,
    then stays (None: the rate stays target_update_rate): fast targets while learning, slow ones
    once learnt. Slow targets damp the critic's late divergence (Mnih et al. 2015; Lillicrap et
    al. 2015, arXiv:1509.02971; 0.005 is SAC's and SB3's rate). The defaults (0.2 until 10k,
    0.005 from 40k) were chosen on tuning seeds 100-109 of CartPole-v1 among nine candidate
    schedules and alpha floors, and measured on the reported seeds 0-19 (docs/results.md, "Staying solved").
    In (0, 1]."""
    target_update_anneal_start: int = 10_000
    """Env step at which the Polyak rate starts moving to target_update_rate_final: the fast
    rate is kept until then, so that learning is not slowed before the task is learnt."""
    target_update_anneal_steps: int = 30_000
    """Env steps over which the Polyak rate moves to target_update_rate_final, from
    target_update_anneal_start."""
    encoder: Literal["auto", "mlp", "nature", "minatar"] = "auto"
    """Observation encoder in front of the actor's and the critics' MLPs (gumbel_ac/encoders.py):
    auto = a convolutional net for image observations (3-D uint8/bool boxes: "nature", Mnih et al.
    2015, for frames of 36x36 and up such as Atari; "minatar", Young & Tian 2019, for small grids
    such as MinAtar's 10x10) and "mlp" (the flat row) for everything else."""
    obs_rescale: bool = False
    """Rescale every bounded observation value from the space's ``[low, high]`` to ``[-1, 1]``
    in the networks' input (Gymnasium's RescaleObservation, inside the model: replay, the count
    bonus and the env keep the raw values; checkpoints and SB3 export carry the bounds).
    Unbounded values pass unchanged. For vector observations whose dimensions differ in scale
    (MountainCar: velocity +-0.07, position -1.2..0.6); not with image encoders."""
    share_encoder: bool = False
    """With a convolutional encoder: the actor reads the critic's encoder features, detached,
    instead of having its own (SAC-AE/DrQ; fewer weights and no actor backward through the
    convolutions). Off = separate encoders, SB3's and CleanRL's sac_atari default."""
    critic_layer_norm: bool = False
    """Layer norm before every hidden ReLU of the critics (Ball et al. 2023, arXiv:2302.02948):
    bounds how far Q can grow away from the data."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the actor and of each critic: 1 to 16 layers, each 1 to 65536 wide
    (and the networks must fit the device's free memory: checked at start)."""
    alpha: float = 0.05
    """Entropy coefficient (the initial value when autotune_alpha is on)."""
    autotune_alpha: bool = True
    """Tune alpha toward target_entropy (SAC v2, Haarnoja et al. 2018)."""
    alpha_max: float | None = None
    """Upper bound on the tuned alpha (None: unbounded): log(alpha) is clamped after each step,
    so a policy that stays below the entropy target cannot drive alpha up without limit.
    Must be > 0 and at least alpha (the initial value). CartPole's preset sets 0.1: it kept
    60 of 60 tuning seeds solved at 100k against 58 without (docs/results.md, "Staying solved")."""
    alpha_min: float | None = None
    """Lower bound on the tuned alpha (None: none): log(alpha) is clamped after each step, so a
    policy whose entropy stays above the target cannot drive alpha to ~0. Measured on CartPole
    (docs/results.md, "Staying solved"): 0.01 alone made late collapses more frequent, not less;
    with slow late targets it was level with them alone, so it is not part of the defaults.
    Must be > 0 and at most alpha (the initial value; so also at most alpha_max)."""
    n_critics: int = 2
    """Critics in the ensemble (SB3's n_critics): 2 is clipped double Q (Fujimoto et al. 2018);
    more make the target's minimum more pessimistic, or, with target_critics, form REDQ's
    ensemble (Chen et al. 2021, arXiv:2101.05982, N = 10). Each critic costs one more MLP pass
    per update (stacked: one batched matmul per layer). CartPole's preset uses REDQ's 10 with
    target_critics 2: 19/20 reported seeds solved at 50k against 17/20 with the twin
    (docs/results.md, "Staying solved")."""
    target_critics: int | None = None
    """REDQ's in-target minimisation set: the critic target takes its minimum over this many
    critics drawn at random from the n_critics for each update, and the actor maximises the
    mean of all of them (Chen et al. 2021, Alg. 1; they use 2 of 10). None: the minimum over
    all critics, and the actor's objective is their minimum (SAC, SB3)."""
    target_q_reduce: Literal["min", "mean"] = "min"
    """How the critic target combines the two target critics: "min" (clipped double Q,
    Fujimoto et al. 2018) or "mean" (the double average Q of Zhou et al. 2022,
    arXiv:2209.10081, meant to go with q_clip: the mean over-estimates more than the min)."""
    q_clip: float | None = None
    """Q-clip of the critic loss (Zhou et al. 2022; PPO's value clipping applied to the critic):
    per sample, the larger of the plain squared error and that of the target critic's value
    moved by at most q_clip toward the online one, so one step cannot carry a critic further
    than q_clip from its target network. None: off. Must be > 0 (in reward units). Measured on
    CartPole (docs/results.md, "Staying solved"): 0.5, alone or with target_q_reduce="mean",
    kept fewer tuning seeds solved than the defaults, so it is not part of them."""
    huber_delta: float | None = None
    """The critic loss's Huber threshold: per sample, 0.5 * error^2 up to this error and linear
    beyond it (DQN's error clipping, Mnih et al. 2015; SB3's DQN uses smooth_l1_loss, i.e. 1.0),
    so one large TD error moves a critic by a bounded step. None: the squared error (SAC, SB3's
    SAC). Must be > 0 (in reward units)."""
    actor_average_rate: float | None = None
    """Polyak rate of an averaged copy of the actor: after every update its weights move this
    fraction of the way to the actor's (an exponential moving average, as the target critic's;
    iterate averaging after Polyak & Juditsky 1992). Evaluation, the saved best and final
    policies, eval.py and SB3 export act with the averaged actor, while collection and the
    losses use the actor itself, so it changes what is deployed, not what is learned: the
    last iterate of a policy that swings between evaluations is one draw from the swing, the
    average is steadier. None: the actor itself. Must be in (0, 1]."""
    target_entropy_ratio: float = 0.1
    """Target entropy as a fraction of the maximum, log(#actions) per head. 0.98 (the common
    discrete-SAC choice) is almost uniform and makes alpha run away on small action sets
    (arXiv:2209.10081); a low target lets the policy become near-deterministic."""
    gumbel_temperature: float = 0.6
    """Gumbel-Softmax temperature tau (start value if annealed)."""
    gumbel_temperature_final: float | None = None
    """If set, anneal tau to this value over temperature_anneal_steps env steps."""
    temperature_schedule: Literal["linear", "exponential"] = "exponential"
    """Shape of the temperature anneal (exponential is Jang et al. 2017's choice)."""
    temperature_anneal_steps: int = 50_000
    """Env steps over which tau moves from gumbel_temperature to gumbel_temperature_final."""
    rao_samples: int = 10
    """Gumbel draws per action for the gumbel-rao estimator (Paulus et al. 2020); 1 to 10_000."""
    max_enumerated_actions: int = 256
    """Up to this many joint actions the critic target and the score/exact estimators enumerate
    every action (exact, cheap for small sets); above it nothing enumerates: the target averages
    --target-action-samples sampled next actions, score uses a sampled leave-one-out baseline and
    exact is refused. 1 to 65_536."""
    target_action_samples: int = 4
    """Sampled next actions per transition for the critic target above --max-enumerated-actions
    (an unbiased estimate of the expected-SARSA target; its variance falls as 1/N, its cost is N
    target-critic passes). 1 to 1_024."""
    score_samples: int = 4
    """Draws of the score estimator's leave-one-out baseline above --max-enumerated-actions
    (Kool et al. 2019); 2 to 1_024."""
    max_nonfinite_updates: int = 100
    """Stop with an error after this many consecutive updates with a non-finite loss or
    gradient (each one is skipped and counted in charts/nonfinite_updates)."""

    # --- evaluation, logging, checkpoints -----------------------------------------------
    eval_every: int = 5_000
    """Evaluate the deterministic policy every this many env steps (0 = only at the end)."""
    eval_episodes: int = 10
    """Episodes per periodic evaluation (the final evaluation uses final_eval_episodes); 1 to
    100_000, checked at start (each episode is one env of the batched eval env)."""
    final_eval_episodes: int = 20
    """Episodes of the final deterministic evaluation; 0 to 100_000, checked at start rather
    than after training."""
    eval_env: str | None = None
    """Env id for evaluation (default: env). E.g. train on gumbel_ac/CartPole-v1, evaluate on
    Gymnasium's own CartPole-v1."""
    checkpoint_every: int = 20_000
    """Write a checkpoint every this many env steps (and always at the end)."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints to keep."""
    log_every: int = 2_000
    """Read metrics from the device and log them every this many env steps."""
    runs_dir: str = "runs"
    """Parent folder of run folders."""
    run_name: str | None = None
    """Run folder name (default: ENV__ESTIMATOR__SEED__TIMESTAMP)."""
    overwrite: bool = False
    """Start a new run in a --run-name folder that holds another run's files by deleting them
    (config.json, metrics.jsonl, checkpoints/) first. Without it such a folder is refused: a new
    run never mixes its rows and checkpoints into another run's."""
    progress: bool = True
    """Show progress on the console: a progress bar on a terminal; one plain line per log row
    when stdout is a file or a pipe (step, average env steps/s, return; evaluations). With
    --no-progress only messages are printed. TensorBoard events are written either way."""
    track: bool = False
    """Log to Weights & Biases (respects WANDB_MODE; use WANDB_MODE=offline without network)."""
    wandb_project: str = "gumbel_ac"
    """wandb project name."""
    wandb_entity: str | None = None
    """wandb entity (team or user)."""

    # --- resume and reproducibility ---------------------------------------------------
    resume: str | None = None
    """Continue the run in this folder (runs/<name>) from its newest good checkpoint: weights,
    optimizer moments, alpha, step counters, RNG states, env state and replay buffer. The run
    keeps its saved config; only flags that do not change what the agent learns from its data
    may be given with other values: --total-steps (e.g. to train longer), --run-name,
    --runs-dir, --device, --num-threads, --progress, --track, --wandb-project, --wandb-entity,
    --log-every, --eval-every, --eval-episodes, --final-eval-episodes, --checkpoint-every,
    --keep-checkpoints, --save-replay, --replay-save-cap, --deterministic-cuda,
    --dist-timeout-s and --debug-syncs. Any other flag that differs is refused. See
    docs/resume.md."""
    save_replay: bool = True
    """Store the replay buffer in checkpoints (safetensors, no pickle), so a resumed run
    samples the same minibatches as an uninterrupted one."""
    replay_save_cap: int = 1_000_000
    """Store at most this many (the newest) replay transitions per checkpoint; a buffer
    larger than this is saved truncated and the resumed run then differs from an
    uninterrupted one (0 = never store replay)."""
    deterministic_cuda: bool = False
    """Use deterministic CUDA kernels (torch.use_deterministic_algorithms + a fixed cuBLAS
    workspace): same seed -> same numbers on the same GPU and software, at some speed cost.
    CPU runs are deterministic without it."""
    cuda_graphs: bool = False
    """On CUDA: capture the update phase (replay sampling, losses, backward, Adam, Polyak) in a
    CUDA graph after 3 eager warm-up updates and replay it each iteration -- one launch instead
    of ~250 (docs/performance.md). Falls back to eager updates, with a message, on CPU, under
    torchrun or if capture fails. Replay indices are drawn differently from the eager path, so
    a run with graphs is not bit-identical to one without."""
    debug_syncs: bool = False
    """On CUDA: run the rollout and update phases under
    torch.cuda.set_sync_debug_mode("error"), so any host synchronization there raises at the
    line that caused it (bookkeeping -- logging, evaluation, checkpoints -- may sync). A tool
    for keeping the fast path fast; no effect on CPU."""
    dist_timeout_s: float = 300.0
    """Under torchrun: seconds a rank waits in a collective before failing the run (a rank that
    hangs then stops the others instead of blocking them forever). Must exceed rank 0's longest
    pause the others wait out: an evaluation or a checkpoint write (docs/distributed.md). At
    most 1e9."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Rebuild from ``to_dict`` output; unknown or mistyped fields are a ConfigError."""
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k not in RETIRED_FIELDS}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        kwargs = dict(data)
        if isinstance(kwargs.get("hidden_sizes"), list):  # JSON has no tuples
            kwargs["hidden_sizes"] = tuple(kwargs["hidden_sizes"])
        cfg = cls(**kwargs)
        cfg._check_types()  # the same annotation-driven check validate() runs
        return cfg

    def env_kwargs_dict(self) -> dict[str, Any]:
        """``env_kwargs`` parsed: a JSON object, or ConfigError saying how to write one."""
        if not self.env_kwargs.strip():
            return {}
        try:
            value = json.loads(self.env_kwargs)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"env_kwargs must be a JSON object like '{{\"size\": 20}}', got {self.env_kwargs!r} ({exc.msg})"
            ) from None
        if not isinstance(value, dict):
            raise ConfigError(f"env_kwargs must be a JSON object like '{{\"size\": 20}}', got {self.env_kwargs!r}")
        return value

    def eval_env_kwargs(self) -> dict[str, Any]:
        """Constructor kwargs of the evaluation env: env_kwargs unless eval_env is another env."""
        return self.env_kwargs_dict() if self.eval_env in (None, self.env) else {}

    def resolve_auto(self) -> Config:
        """A copy with the fields whose 0 means "auto" filled in from num_envs; self is unchanged.

        Why these rules: with many envs each vector step adds num_envs transitions, so a
        fixed batch of 128 would use a vanishing fraction of the data per update; a batch of
        about one vector step keeps the replay ratio near updates_per_step / 1 per
        transition-batch. Measured on CartPole (docs/performance.md, "Large populations").
        """
        config = self._with_preset()
        batch_size, buffer_size = config.batch_size, config.buffer_size
        if batch_size == 0:
            batch_size = 128 if self.num_envs <= 128 else min(4096, self.num_envs)
        if buffer_size == 0:
            buffer_size = max(100_000, 64 * self.num_envs)
        return dataclasses.replace(config, batch_size=batch_size, buffer_size=buffer_size)

    @classmethod
    def with_overrides(cls, **fields: Any) -> Config:
        """``Config(**fields)`` that remembers which fields were named, so the env's preset
        (``preset="auto"``) fills in only the others -- a named field wins even when its value
        is the default (``Config(env="LunarLander-v3", gamma=0.995)`` alone cannot tell that
        gamma was asked for, and would take the preset's 0.99). The command line does the same
        with the flags given."""
        return cls(**fields).naming(fields)

    def naming(self, names: Collection[str]) -> Config:
        """A copy that remembers ``names`` as the fields the caller set (:meth:`with_overrides`)."""
        unknown = set(names) - {f.name for f in dataclasses.fields(Config)}
        if unknown:
            raise ConfigError(f"unknown Config field(s): {', '.join(sorted(unknown))}")
        config = dataclasses.replace(self)
        object.__setattr__(config, _NAMED_ATTR, frozenset(names))
        return config

    def _with_preset(self) -> Config:
        """With ``preset="auto"``: the env's preset (:mod:`gumbel_ac.presets`) applied to the
        fields the caller did not name (:meth:`with_overrides`; without it, the fields still at
        their defaults), and ``preset`` set to the entry's name (so a saved, re-checked config
        is not changed again); otherwise unchanged."""
        if self.preset != "auto":
            return self
        values = preset_for(self.env)
        if not values:
            return dataclasses.replace(self, preset="none")
        named = getattr(self, _NAMED_ATTR, None)
        if isinstance(named, frozenset):
            chosen = {k: v for k, v in values.items() if k not in named}
        else:
            defaults = {f.name: f.default for f in dataclasses.fields(Config)}
            chosen = {k: v for k, v in values.items() if getattr(self, k) == defaults[k]}
        return dataclasses.replace(self, preset=self.env, **chosen)

    def validate(self) -> Config:
        """Check every field and return a resolved copy; raise one ConfigError naming the field and the fix.

        The caller's object is left unchanged: use the returned config (``config =
        config.validate()``), whose "auto" fields (batch_size, buffer_size) are filled in
        (:meth:`resolve_auto`). Why a copy: validating used to fill those fields in place, so a
        config validated once and then edited (``num_envs``) silently kept sizes resolved for
        the old value, and whether a caller saw resolved values depended on who validated first.

        On top of :meth:`check` (what a saved config must pass too), the checks of a run about
        to start on this machine: on the CPU, the memory the config needs with the smallest
        possible env must fit (:func:`gumbel_ac.budget.check_config_fits_host`; the trainer
        repeats it with the env's real sizes), and a run that would make no update at all gets
        a :class:`ConfigWarning` (:meth:`_warn_if_no_updates` says why not an error).
        """
        resolved = self.check()
        from gumbel_ac.budget import check_config_fits_host

        check_config_fits_host(resolved)
        resolved._warn_if_no_updates()
        return resolved

    def check(self) -> Config:
        """Types, values, size caps and env_kwargs: the resolved copy, or one ConfigError.

        The same on every machine, so it is also what a config read from a checkpoint must pass
        (:func:`gumbel_ac.checkpoint.load_run`, ``saved_config``): a value edited into
        meta.json meets the same check and the same caps as the flag would, before anything is
        built from it. Machine-dependent checks (free memory) are :meth:`validate`'s.
        """
        self._check_types()  # first: resolve_auto compares num_envs
        resolved = self.resolve_auto()
        try:
            resolved._check_values()
        except ConfigError as exc:
            # A value the preset filled in, not the user: say where it came from and the way out.
            applied = [k for k in preset_for(resolved.preset) if getattr(resolved, k) != getattr(self, k)]
            named = [k for k in applied if k in str(exc)]
            if self.preset == "auto" and named:
                raise ConfigError(
                    f"{exc}; {', '.join(named)} came from the {resolved.preset} preset: set it yourself, "
                    "or --preset none"
                ) from None
            raise
        return resolved

    def _warn_if_no_updates(self) -> None:
        """Warn (:class:`ConfigWarning`) when no env step would be followed by an update.

        Updates need ``step > learning_starts`` and ``batch_size`` transitions in replay; the
        last step is total_steps rounded up to a multiple of num_envs. A warning, not an error:
        such a run is a uniform-random-policy baseline or a smoke test of the pipeline
        (folders, checkpoints, evaluation), both legitimate -- but it used to pass silently,
        and by mistake it wastes a run that looks trained.
        """
        import warnings

        end = -(-self.total_steps // self.num_envs) * self.num_envs
        if self.learning_starts >= end or self.batch_size > end:
            why = (
                f"learning_starts ({self.learning_starts}) >= the run's {end} env steps"
                if self.learning_starts >= end
                else f"batch_size ({self.batch_size}) > the run's {end} env steps"
            )
            warnings.warn(
                f"this run makes no gradient update: {why}, so the policy stays uniformly random; "
                "raise --total-steps or lower --learning-starts/--batch-size if you meant to train",
                ConfigWarning,
                stacklevel=2,  # this line: the default filter then shows it once, not per caller
            )

    def _check_values(self) -> None:
        """Every check but the types, on a config whose "auto" sizes are resolved: the run's
        sizes, counts and folders here, the learning hyperparameters in
        :meth:`_check_learning_values`."""

        self._check_env_kwargs()
        from gumbel_ac.presets import PRESETS

        _need(
            self.preset in ("auto", "none") or self.preset in PRESETS,
            f"preset must be 'auto', 'none' or one of {sorted(PRESETS)}, got {self.preset!r}",
        )
        _need(self.num_seeds >= 1, f"num_seeds must be >= 1, got {self.num_seeds}")
        # numpy seeds must fit in 32 bits; derived seeds add offsets (eval envs, ranks, seeds).
        _need(
            0 <= self.seed <= MAX_SEED,
            f"seed must be in [0, 2**31 - 1], got {self.seed}",
        )
        # Checked here, not when seed + k is trained: that used to fail after the first seeds.
        _need(
            self.seed + self.num_seeds - 1 <= MAX_SEED,
            f"seed + num_seeds - 1 = {self.seed + self.num_seeds - 1} is above 2**31 - 1 (the last seed's run "
            f"would be refused after the others trained); lower --seed to at most {MAX_SEED - self.num_seeds + 1} "
            "or --num-seeds",
        )
        _need(
            not (self.num_seeds > 1 and self.resume),
            "--resume continues one run folder; resume each seed's folder separately instead of --num-seeds",
        )

        _need(isinstance(self.env, str) and bool(self.env), "env must be a non-empty env id")
        for name in ("total_steps", "num_envs", "batch_size", "buffer_size", "updates_per_step"):
            _need(int(getattr(self, name)) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("learning_starts", "eval_every", "log_every", "checkpoint_every"):
            _need(int(getattr(self, name)) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        self._cap("total_steps", MAX_TOTAL_STEPS, "2**62")
        self._cap("num_envs", MAX_NUM_ENVS, "2**24")
        _need(self.eval_episodes >= 1, f"eval_episodes must be >= 1, got {self.eval_episodes}")
        _need(
            self.final_eval_episodes >= 0,
            f"final_eval_episodes must be >= 0, got {self.final_eval_episodes}",
        )
        # Checked at start: these only allocate at the first (or the final) evaluation.
        self._cap("eval_episodes", MAX_EVAL_EPISODES, "100_000")
        self._cap("final_eval_episodes", MAX_EVAL_EPISODES, "100_000")
        _need(self.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        _need(self.num_threads >= 0, f"num_threads must be >= 0, got {self.num_threads}")
        self._cap("num_threads", MAX_NUM_THREADS, "1024")
        self._check_learning_values()
        self._check_exploration_values()

    def _check_exploration_values(self) -> None:
        """The count bonus (whether the env's observations allow one is checked at start)."""
        _need(
            self._finite("count_bonus") >= 0.0,
            f"count_bonus must be >= 0 (0 turns it off), got {self.count_bonus}",
        )
        _need(
            self.count_bonus_timing in ("sample", "collect"),
            f"count_bonus_timing must be 'sample' or 'collect', got {self.count_bonus_timing!r}",
        )
        _need(
            2 <= self.count_bins <= MAX_COUNT_BINS,
            f"count_bins must be in [2, {MAX_COUNT_BINS}], got {self.count_bins}",
        )
        _need(1 <= self.n_critics <= MAX_N_CRITICS, f"n_critics must be in [1, {MAX_N_CRITICS}], got {self.n_critics}")
        _need(
            self.target_critics is None or 1 <= self.target_critics <= self.n_critics,
            f"target_critics must be in [1, n_critics={self.n_critics}] or None (all), got {self.target_critics}",
        )
        _need(1 <= self.n_step <= MAX_N_STEP, f"n_step must be in [1, {MAX_N_STEP}], got {self.n_step}")
        _need(
            self.n_step == 1 or self.count_bonus == 0 or self.count_bonus_timing == "collect",
            "n_step > 1 does not combine with a count bonus read at sampling time (a one-step bonus): "
            "set --count-bonus-timing collect (the bonus stored with the reward), --n-step 1 or --count-bonus 0",
        )

    def _check_learning_values(self) -> None:
        """The learning hyperparameters: discount, rates, entropy, temperatures, estimator."""
        _need(0.0 <= self._finite("gamma") <= 1.0, f"gamma must be in [0, 1], got {self.gamma}")
        for name in ("actor_lr", "critic_lr", "alpha_lr"):
            _need(self._finite(name) > 0.0, f"{name} must be > 0 (a learning rate), got {getattr(self, name)}")
            _need(
                getattr(self, name) <= MAX_LR,
                f"{name} must be at most {MAX_LR:g} (a larger Adam step diverges at once), got {getattr(self, name)}",
            )
        _need(
            0.0 < self._finite("target_update_rate") <= 1.0,
            f"target_update_rate must be in (0, 1], got {self.target_update_rate}",
        )
        if self.target_update_rate_final is not None:
            _need(
                0.0 < self._finite("target_update_rate_final") <= 1.0,
                f"target_update_rate_final must be in (0, 1], got {self.target_update_rate_final}",
            )
        _need(
            self.target_update_anneal_start >= 0,
            f"target_update_anneal_start must be >= 0, got {self.target_update_anneal_start}",
        )
        _need(
            self.target_update_anneal_steps >= 1,
            f"target_update_anneal_steps must be >= 1, got {self.target_update_anneal_steps}",
        )
        _need(self._finite("alpha") >= 0.0, f"alpha must be >= 0, got {self.alpha}")
        if self.alpha_max is not None:
            _need(self._finite("alpha_max") > 0.0, f"alpha_max must be > 0, got {self.alpha_max}")
            _need(
                self.alpha <= self.alpha_max,
                f"alpha ({self.alpha}) must not exceed alpha_max ({self.alpha_max}): the cap would cut it at once",
            )
        if self.q_clip is not None:
            _need(self._finite("q_clip") > 0.0, f"q_clip must be > 0 (or None: off), got {self.q_clip}")
        if self.actor_average_rate is not None:
            _need(
                0.0 < self._finite("actor_average_rate") <= 1.0,
                f"actor_average_rate must be in (0, 1] (or None: off), got {self.actor_average_rate}",
            )
        if self.huber_delta is not None:
            _need(
                self._finite("huber_delta") > 0.0,
                f"huber_delta must be > 0 (or None: the squared error), got {self.huber_delta}",
            )
        if self.alpha_min is not None:
            _need(self._finite("alpha_min") > 0.0, f"alpha_min must be > 0, got {self.alpha_min}")
            _need(
                self.alpha_min <= self.alpha,
                f"alpha_min ({self.alpha_min}) must not exceed alpha ({self.alpha}): the floor would lift it at once",
            )
        _need(
            not (self.autotune_alpha and self.alpha <= 0.0),
            "alpha must be > 0 when autotune_alpha is on (it is tuned in log space)",
        )
        _need(
            0.0 <= self._finite("target_entropy_ratio") <= 1.0,
            f"target_entropy_ratio must be in [0, 1], got {self.target_entropy_ratio}",
        )
        _need(
            self._finite("gumbel_temperature") > 0.0,
            f"gumbel_temperature must be > 0 (tau = 0 divides by zero), got {self.gumbel_temperature}",
        )
        if self.gumbel_temperature_final is not None:
            _need(
                self._finite("gumbel_temperature_final") > 0.0,
                f"gumbel_temperature_final must be > 0, got {self.gumbel_temperature_final}",
            )
        _need(
            self.temperature_schedule in ("linear", "exponential"),
            f"temperature_schedule must be 'linear' or 'exponential', got {self.temperature_schedule!r}",
        )
        _need(
            self.lr_schedule in ("constant", "linear"),
            f"lr_schedule must be 'constant' or 'linear', got {self.lr_schedule!r}",
        )
        _need(
            self.encoder in ("auto", "mlp", "nature", "minatar"),
            f"encoder must be 'auto', 'mlp', 'nature' or 'minatar', got {self.encoder!r}",
        )
        _need(
            self.act in ("sample", "mode", "epsilon"),
            f"act must be 'sample', 'mode' or 'epsilon', got {self.act!r}",
        )
        _need(
            0.0 <= self._finite("act_epsilon") <= 1.0,
            f"act_epsilon must be in [0, 1], got {self.act_epsilon}",
        )
        _need(self.temperature_anneal_steps >= 1, "temperature_anneal_steps must be >= 1")
        _need(self.max_nonfinite_updates >= 1, "max_nonfinite_updates must be >= 1")
        _need(self.rao_samples >= 1, f"rao_samples must be >= 1, got {self.rao_samples}")
        _need(
            1 <= self.max_enumerated_actions <= 65_536,
            f"max_enumerated_actions must be in [1, 65536], got {self.max_enumerated_actions}",
        )
        _need(
            1 <= self.target_action_samples <= 1_024,
            f"target_action_samples must be in [1, 1024], got {self.target_action_samples}",
        )
        _need(2 <= self.score_samples <= 1_024, f"score_samples must be in [2, 1024], got {self.score_samples}")
        self._cap("rao_samples", MAX_RAO_SAMPLES, "10_000")
        _need(self._finite("dist_timeout_s") > 0.0, f"dist_timeout_s must be > 0, got {self.dist_timeout_s}")
        _need(
            self.dist_timeout_s <= MAX_DIST_TIMEOUT_S,
            f"dist_timeout_s must be at most 1e9 seconds, got {self.dist_timeout_s}",
        )
        _need(self.replay_save_cap >= 0, f"replay_save_cap must be >= 0, got {self.replay_save_cap}")
        _need(
            self.resume is None or bool(self.resume),
            "resume must be a run folder (runs/<name>), not an empty string",
        )
        _need(
            not (self.overwrite and self.resume),
            "--overwrite starts a new run and --resume continues one: give only one of them",
        )
        _need(
            len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes),
            f"hidden_sizes must be one or more positive widths, got {self.hidden_sizes}",
        )
        _need(
            len(self.hidden_sizes) <= MAX_HIDDEN_LAYERS and max(self.hidden_sizes) <= MAX_HIDDEN_WIDTH,
            f"hidden_sizes must be at most {MAX_HIDDEN_LAYERS} layers of at most {MAX_HIDDEN_WIDTH} units, "
            f"got {len(self.hidden_sizes)} layer(s), widest {max(self.hidden_sizes)}; lower --hidden-sizes",
        )
        _need(
            self.device in ("auto", "cpu", "cuda"),
            f"device must be auto, cpu or cuda, got {self.device!r}",
        )
        _need(
            self.batch_size <= self.buffer_size,
            f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size})",
        )
        # Estimator name and its options (tau >= 1 for reinmax, ...) are checked by the
        # estimator module, the one place that knows them.
        from gumbel_ac import estimators

        try:
            estimators.get_estimator(self.estimator)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        check = getattr(estimators, "validate_estimator_options", None)
        if check is not None:
            taus = [self.gumbel_temperature]
            if self.gumbel_temperature_final is not None:
                taus.append(self.gumbel_temperature_final)
            for tau in taus:
                try:
                    check(self.estimator, tau=tau, rao_samples=self.rao_samples)
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None

    def _cap(self, name: str, limit: int, shown: str) -> None:
        """``name`` at most ``limit`` (``shown`` as the message writes it)."""
        value = getattr(self, name)
        _need(value <= limit, f"{name} must be at most {shown}, got {value}; lower --{name.replace('_', '-')}")

    def _finite(self, name: str) -> float:
        """``name``'s value, which must be a finite number."""
        value = getattr(self, name)
        _need(
            isinstance(value, (int, float)) and math.isfinite(value),
            f"{name} must be a finite number, got {value!r}",
        )
        return float(value)

    def _check_env_kwargs(self) -> None:
        """env_kwargs: a small JSON object whose keys the env takes and the factory does not set.

        The same check for ``--env-kwargs`` and for env_kwargs read from a checkpoint: a key
        such as ``device`` or ``num_envs`` used to reach the constructor (a TypeError traceback,
        or a second value for a size the caps never saw), ``render_mode`` opened a window during
        evaluation. Reserved keys are :data:`gumbel_ac.vector.RESERVED_ENV_KWARGS`; for our
        gumbel_ac/ envs keys and value types are checked against the constructor's signature,
        without building the env (:func:`gumbel_ac.vector.check_env_kwargs`).
        """
        if len(self.env_kwargs) > MAX_ENV_KWARGS_CHARS:
            raise ConfigError(
                f"env_kwargs is {len(self.env_kwargs)} characters, more than the {MAX_ENV_KWARGS_CHARS} allowed; "
                "pass only the constructor arguments you change"
            )
        try:
            kwargs = self.env_kwargs_dict()  # raises ConfigError on bad JSON
        except (RecursionError, ValueError) as exc:  # nesting too deep; ints over 4300 digits
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"env_kwargs is not a usable JSON object ({type(exc).__name__}: {exc})") from None
        from gumbel_ac.vector import check_env_kwargs

        check_env_kwargs(self.env, kwargs)

    def _check_types(self) -> None:
        """Each field holds a value of its annotated type (the Python API takes anything).

        Why: a later comparison such as ``"3" >= 1`` or ``int(nan)`` would raise TypeError or
        ValueError deep in training instead of one ConfigError naming the field.
        """
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _matches(value, hints[f.name]):
                raise ConfigError(
                    f"{f.name} must be {_expected_type(hints[f.name])}, got {value!r} ({type(value).__name__})"
                )

    def lr_scale_at(self, step: int) -> float:
        """Multiplier of the learning rates after ``step`` env steps (a Python float)."""
        if self.lr_schedule == "linear":
            return max(0.0, 1.0 - step / self.total_steps)
        return 1.0

    def count_bonus_at(self, step: int) -> float:
        """The count bonus's scale beta after ``step`` env steps (a Python float)."""
        if self.count_bonus_schedule == "linear":
            return self.count_bonus * max(0.0, 1.0 - step / self.total_steps)
        return self.count_bonus

    def target_update_rate_at(self, step: int) -> float:
        """Polyak rate of the target critics after ``step`` env steps (a Python float)."""
        if self.target_update_rate_final is None:
            return self.target_update_rate
        frac = min(1.0, max(0.0, (step - self.target_update_anneal_start) / self.target_update_anneal_steps))
        if frac == 1.0:  # exactly the final rate, not r0 + (rf - r0) rounded
            return self.target_update_rate_final
        return self.target_update_rate + frac * (self.target_update_rate_final - self.target_update_rate)

    def temperature_at(self, step: int) -> float:
        """Gumbel temperature after ``step`` env steps (a Python float: no device sync)."""
        if self.gumbel_temperature_final is None:
            return self.gumbel_temperature
        frac = min(1.0, max(0.0, step / self.temperature_anneal_steps))
        start, end = self.gumbel_temperature, self.gumbel_temperature_final
        if self.temperature_schedule == "linear":
            return start + frac * (end - start)
        return start * (end / start) ** frac


def merge_resume_config(saved: Config, given: Config, explicit: Collection[str] | None = None) -> Config:
    """The config of a resumed run: ``saved`` (from the checkpoint) with ``given``'s overrides.

    Which of ``given``'s fields are overrides: exactly ``explicit`` when it is known (the CLI
    and :func:`gumbel_ac.resume.resume_config` pass the fields the user named), otherwise every
    field whose value differs from its dataclass default -- so ``train(Config(resume=path))``
    continues the run with ALL its own settings, its ``total_steps`` and logging cadence
    included, just as ``train.py --resume path`` does. An override of a field in
    :data:`RESUME_OVERRIDABLE` is applied; an override of any other field to a value other than
    the saved one is a ConfigError naming it -- changing e.g. the learning rate mid-run would
    make the resumed run a different experiment under the same name.
    """
    conflicts = []
    merged: dict[str, Any] = {}
    for f in dataclasses.fields(Config):
        old, new = getattr(saved, f.name), getattr(given, f.name)
        merged[f.name] = old
        if explicit is not None:
            named = f.name in explicit
        else:
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            named = new != default
        if not named or new == old:
            continue
        if f.name in RESUME_OVERRIDABLE:
            merged[f.name] = new
        else:
            conflicts.append(f"{f.name} (run: {old!r}, given: {new!r})")
    if conflicts:
        raise ConfigError(
            "a resumed run keeps its config; these flags differ from the checkpoint's: "
            + ", ".join(conflicts)
            + f". Only {', '.join(sorted(RESUME_OVERRIDABLE - {'resume', 'runs_dir', 'run_name'}))} may change"
            " (start a new run for other settings)"
        )
    merged["resume"] = given.resume
    return Config(**merged)
