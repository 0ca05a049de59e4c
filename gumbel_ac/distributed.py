"""Data-parallel training with ``torchrun``: P ranks, one gradient all-reduce per update.

``torchrun --nproc_per_node=P train.py ...`` starts P copies of the trainer. Each rank owns
its own env population (seeded ``seed + rank * RANK_SEED_STRIDE``) and its own replay buffer;
every gradient step, each rank computes the gradient of its own minibatch and the ranks
average them, so one step of P ranks is one step on a global batch of ``P * batch_size``.
Rank 0 alone logs, shows the progress bar, evaluates and writes checkpoints (the same format
as a single process: ``eval.py`` loads them unchanged). docs/distributed.md has the commands.

Why an explicit all-reduce and not ``DistributedDataParallel``: the trainer already keeps
every trained parameter's gradient in ONE flat buffer and runs ONE backward per step
(:class:`gumbel_ac.learner.Learner`), so the whole synchronization is one
``all_reduce(flat_grad)`` through the learner's ``grad_hook``. DDP's
gradient bucketing and backward/communication overlap have nothing to overlap with a buffer
this small, and its module wrapping fights the loss structure: the actor's loss reaches the
critic through *detached* weights (``CriticObjective``) and the target critic lives outside
the modules DDP would wrap, so DDP would need ``find_unused_parameters`` and would reduce
per-module instead of once.

Why parameters stay bit-identical: all ranks start from rank 0's broadcast weights, Adam
moments and step count; the reduced gradient is the same bits on every rank (a collective's
result is what every rank receives); FlatAdam and the Polyak update are deterministic
functions of (parameters, gradient). log-alpha is in the flat buffer when tuned, so alpha
stays identical too (tests/test_distributed.py compares the bytes). The non-finite check in
``Learner.step`` runs after the all-reduce, and a rank whose own loss is non-finite poisons the
reduced gradient, so every rank skips the same steps.

Control flow that must agree across ranks uses only values that are identical by
construction (the global step, counters) or are agreed through a collective: the stop flag
(SIGINT/SIGTERM; all-reduced on a gloo group every 16th iteration: host memory only, no
device sync), the logged statistics (one all-reduce per log interval) and the non-finite streak.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from gumbel_ac.config import Config, ConfigError
from gumbel_ac.seeding import derive_seed
from gumbel_ac.vector import resolve_device

if TYPE_CHECKING:  # pragma: no cover
    from gumbel_ac.learner import Learner

#: Rank r's seed is ``seed + r * RANK_SEED_STRIDE``: rank 0 keeps ``seed`` (so a one-rank run
#: is the single-process run), and the stride keeps rank streams clear of the ``seed + 1``,
#: ``seed + 2``, ``seed + 1000``, ``seed + 2000`` the trainer derives, and of nearby seeds.
RANK_SEED_STRIDE = 1_000_003

#: Under torchrun the ranks agree on the stop flag (SIGINT/SIGTERM) every this many iterations.
STOP_SYNC_EVERY = 16


def launched_world_size() -> int:
    """How many ranks torchrun started (``WORLD_SIZE``; 1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def make_grad_hook(world_size: int, group: Any = None) -> Callable[[torch.Tensor], None]:
    """The learner's ``grad_hook``: average ``flat_grad`` over ranks.

    ONE collective per update. Divide first, then sum: the same result as sum-then-divide for
    the power-of-two rank counts where division is exact, and it works with gloo, which has
    no ``ReduceOp.AVG``.
    """
    scale = 1.0 / world_size

    def hook(flat_grad: torch.Tensor) -> None:
        flat_grad.mul_(scale)
        dist.all_reduce(flat_grad, group=group)

    return hook


class SilentLogger:
    """What ranks other than 0 log: nothing (same methods as :class:`MetricsLogger`)."""

    def log(self, step: int, metrics: dict[str, float]) -> None:
        del step, metrics

    def message(self, text: str) -> None:
        del text

    def close(self) -> None:
        pass


@dataclass
class DistContext:
    """This process's place in the run; ``world_size == 1`` is the plain single process.

    Every method is a no-op (or returns its input) in a single process, so the trainer calls
    them unconditionally.
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False
    control_group: Any = None  # gloo group for host-side flags (the default group on CPU)
    grad_hook: Callable[[torch.Tensor], None] | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, evaluates and writes checkpoints."""
        return self.rank == 0

    def rank_seed(self, seed: int) -> int:
        """The seed of this rank's envs, action/update/replay generators and numpy RNG."""
        return seed + self.rank * RANK_SEED_STRIDE

    def resume_seed(self, seed: int, step: int) -> int:
        """Seed of a rank > 0 on resume: checkpoints hold rank 0's state only, so the other
        ranks re-seed deterministically from (seed, rank, step) (docs/distributed.md)."""
        return derive_seed(seed, self.rank, step)

    def sync_start(self, learner: Learner, counters: list[int]) -> list[int]:
        """Give every rank rank 0's weights, target critic, log-alpha, Adam state and ``counters``.

        Called once before the loop (after rank 0 restored a checkpoint, if resuming). Returns
        rank 0's ``counters`` (e.g. the global step) on every rank.
        """
        if not self.enabled:
            return counters
        optimizer = learner.optimizer
        with torch.no_grad():
            for t in (
                learner.flat_param,
                learner.flat_critic_target,
                learner.agent.log_alpha.data,
                optimizer.exp_avg,
                optimizer.exp_avg_sq,
            ):
                dist.broadcast(t.reshape(-1), src=0)  # a view: broadcast in place
        host = torch.tensor(counters + [optimizer.steps], dtype=torch.int64)
        dist.broadcast(host, src=0, group=self.control_group)
        values = [int(v) for v in host.tolist()]
        optimizer.steps = values[-1]
        return values[:-1]

    def agree(self, flag: bool, iteration: int) -> bool:
        """True on every rank when ``flag`` is True on any; asked every ``STOP_SYNC_EVERY``-th
        iteration (a host-memory gloo all-reduce), False in between.

        Why not every iteration: measured with benchmarks/distributed.py on the loaded 2-core
        CPU here, one 1-element all-reduce cost 0.3-0.8 ms, up to ~10% of a 2-rank iteration; every
        16th costs 0.02-0.05 ms per iteration and delays a stop by < 16 iterations. With NCCL
        training it runs on the gloo control group, so it never syncs the GPU.
        """
        if not self.enabled:
            return flag
        if iteration % STOP_SYNC_EVERY:
            return False
        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control_group)
        return bool(t[0])

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over ranks (in place; one collective). Bookkeeping phase only."""
        if self.enabled:
            dist.all_reduce(t)
        return t

    def close(self) -> None:
        """Clean exit: barrier, then tear the group down.

        The barrier first: a rank that destroys its process group while a peer is still in
        its last collective can abort in teardown (seen here with gloo, docs/DESIGN.md §6).
        """
        if self.owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
            self.owns_group = False


def setup(config: Config) -> DistContext:
    """This process's :class:`DistContext`; joins the process group when torchrun started P > 1.

    Reads torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and ``MASTER_ADDR``/``PORT``
    through the ``env://`` rendezvous). Backend: NCCL when training on CUDA, with this rank
    on GPU ``LOCAL_RANK``; gloo on CPU. Collectives time out after ``config.dist_timeout_s``,
    so a rank that hangs makes the others fail instead of waiting forever. A group the caller
    initialized already is used as is (and not destroyed by :meth:`DistContext.close`).
    """
    device = resolve_device(config.device)
    world_size = dist.get_world_size() if dist.is_initialized() else launched_world_size()
    if world_size <= 1:
        return DistContext(device=device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank} but torch sees {torch.cuda.device_count()} GPU(s); "
                "use --nproc_per_node <= the number of GPUs per machine"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=config.dist_timeout_s)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timeout)
        owns = True
    rank = dist.get_rank()
    control = dist.new_group(backend="gloo", timeout=timeout) if dist.get_backend() != "gloo" else None
    return DistContext(
        device=device,
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        owns_group=owns,
        control_group=control,
        grad_hook=make_grad_hook(world_size),
    )
