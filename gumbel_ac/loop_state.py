"""``LoopState``: the training loop's carry, which is also its checkpoint payload.

Everything the loop changes from one iteration to the next lives here -- counters, the
current observation, the device-side metric accumulators of the open log window, the
action/update/replay generators, the evaluations so far -- so the loop is a function of
(components, state), as PureJaxRL's ``runner_state``, and a checkpoint is ``state_dict()``
of each component. Resuming puts the same values back, which is what makes a resumed CPU run
bit-identical to one never stopped (tests/test_resume.py).

The other components own their state themselves: the :class:`~gumbel_ac.learner.Learner`
(weights, Adam, the non-finite guard), the :class:`~gumbel_ac.buffer.ReplayBuffer` (its
ring) and the torch env (``state_dict`` of ``gumbel_ac.envs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from gumbel_ac.losses import UpdateStats

__all__ = ["EvalRecord", "LoopState", "GENERATORS"]

#: The loop's random streams: acting (Gumbel-max samples), the update's estimator noise and
#: replay sampling, seeded ``seed``, ``seed + 1``, ``seed + 2``.
GENERATORS = ("act", "update", "replay")


@dataclass
class EvalRecord:
    """One evaluation: at ``step``, mean and std of the returns, training seconds so far."""

    step: int
    mean: float
    std: float
    train_seconds: float


def _generator_state(value: Any, key: str, device: torch.device) -> torch.Tensor:
    """``value`` if it is a valid ``device`` generator state, else ``ValueError``."""
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1:
        raise ValueError(f"loop state {key!r} must be a generator state (uint8 vector)")
    try:  # a scratch generator: a bad state is refused without touching the live one
        torch.Generator(device=device).set_state(value)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ValueError(f"loop state {key!r} is not a valid {device.type} generator state ({exc})") from None
    return value


@dataclass
class LoopState:
    """The loop's carry (see the module docstring).

    Attributes:
        obs: ``[N, D]`` the observation the policy acts on next.
        generators: ``act``, ``update``, ``replay`` torch generators on the training device.
        stats_sum: ``[S]`` sums of :attr:`UpdateStats.NAMES` over the window's updates.
        ep_sums: ``[4]`` the window's finished episodes (count, return sum, length sum) and the
            transitions not stored for a non-finite value.
        global_step: env steps taken (all ranks under torchrun).
        updates_in_window: gradient steps since the last log line.
        train_seconds: wall-clock seconds of training so far (evaluations excluded).
        evals: the periodic evaluations so far.
        finished: the run reached ``total_steps`` (set by the final checkpoint).
        rows_added: env rows this process added since it started. Not saved: under torchrun
            it gates the first update identically on every rank (a resumed rank 0 and fresh
            ranks > 0 all start it at 0).
    """

    obs: torch.Tensor
    generators: dict[str, torch.Generator]
    stats_sum: torch.Tensor
    ep_sums: torch.Tensor
    global_step: int = 0
    updates_in_window: int = 0
    train_seconds: float = 0.0
    evals: list[EvalRecord] = field(default_factory=list)
    finished: bool = False
    rows_added: int = 0

    @classmethod
    def fresh(cls, obs: torch.Tensor, seed: int, device: torch.device) -> LoopState:
        """The state at step 0: generators seeded ``seed + i``, empty accumulators."""
        return cls(
            obs=obs,
            generators={
                name: torch.Generator(device=device).manual_seed(seed + i) for i, name in enumerate(GENERATORS)
            },
            stats_sum=torch.zeros(len(UpdateStats.NAMES), device=device),
            ep_sums=torch.zeros(4, device=device),
        )

    def reseed(self, seed: int) -> None:
        """Re-seed the generators as :meth:`fresh` does (torchrun ranks > 0 on resume)."""
        for i, name in enumerate(GENERATORS):
            self.generators[name].manual_seed(seed + i)

    def reset_window(self) -> None:
        """Start a new log window (after its line was written)."""
        self.stats_sum.zero_()
        self.ep_sums.zero_()
        self.updates_in_window = 0

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Tensors and JSON values only. Includes torch's global CPU RNG (dropout-free nets
        never draw from it, but SB3-style code and user envs may). Reads the device."""
        return {
            "global_step": self.global_step,
            "updates_in_window": self.updates_in_window,
            "train_seconds": self.train_seconds,
            "evals": [[e.step, e.mean, e.std, e.train_seconds] for e in self.evals],
            "finished": self.finished,
            "obs": self.obs,
            "stats_sum": self.stats_sum,
            "ep_sums": self.ep_sums,
            "rng": {name: gen.get_state() for name, gen in self.generators.items()},
            "rng_torch_cpu": torch.get_rng_state(),
        }

    def check_state_dict(self, state: dict[str, Any]) -> None:
        """Raise ``ValueError`` unless ``state`` fits this loop (types, shapes, ranges); changes nothing."""

        def integer(key: str) -> int:
            value = state.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"loop state {key!r} must be a non-negative integer")
            return value

        integer("global_step")
        integer("updates_in_window")
        seconds = state.get("train_seconds")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds):
            raise ValueError("loop state 'train_seconds' must be a finite number")
        evals = state.get("evals")
        if not isinstance(evals, list) or not all(
            isinstance(e, list)
            and len(e) == 4
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in e)
            for e in evals
        ):
            raise ValueError("loop state 'evals' must be a list of [step, mean, std, seconds]")
        if not isinstance(state.get("finished"), bool):
            raise ValueError("loop state 'finished' must be true or false")
        for key in ("obs", "stats_sum", "ep_sums"):
            like, got = getattr(self, key), state.get(key)
            if not isinstance(got, torch.Tensor) or got.shape != like.shape or got.dtype != like.dtype:
                raise ValueError(f"loop state {key!r} must be {tuple(like.shape)} {like.dtype}")
        rng = state.get("rng")
        if not isinstance(rng, dict) or set(rng) != set(self.generators):
            raise ValueError(f"loop state 'rng' must hold the generators {sorted(self.generators)}")
        for name, gen in self.generators.items():
            _generator_state(rng[name], f"rng/{name}", gen.device)
        _generator_state(state.get("rng_torch_cpu"), "rng_torch_cpu", torch.device("cpu"))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (checked first: :meth:`check_state_dict`)."""
        self.check_state_dict(state)
        self.global_step = state["global_step"]
        self.updates_in_window = state["updates_in_window"]
        self.train_seconds = float(state["train_seconds"])
        self.evals = [EvalRecord(int(e[0]), float(e[1]), float(e[2]), float(e[3])) for e in state["evals"]]
        self.finished = state["finished"]
        self.obs = state["obs"].to(self.obs.device)
        self.stats_sum.copy_(state["stats_sum"])
        self.ep_sums.copy_(state["ep_sums"])
        for name, gen in self.generators.items():
            gen.set_state(state["rng"][name])
        torch.set_rng_state(state["rng_torch_cpu"])
